"""Admin: endpoint registration (secret shown once), health, test event, replay."""
# ruff: noqa: F811 - pytest fixtures imported from webhook_helpers

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.models import Delivery, DeliveryState, WebhookEndpoint
from integrations.tests.webhook_helpers import make_endpoint, sink, write_event  # noqa: F401
from programs.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_admin_registers_endpoint_shows_secret_once_and_masks_it(admin_client, org, sink):
    # when
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {
            "organization": org.pk,
            "partner_name": "Acme Labs",
            "url": sink.url(),
            "event_types": "[]",
            "enabled": "on",
            "retry_schedule": "null",
            "breaker_threshold": 10,
            "breaker_probe_seconds": 60,
        },
        follow=True,
    )
    # then
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret in response.content.decode()
    change = admin_client.get(
        reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk])
    ).content.decode()
    listing = admin_client.get(reverse("admin:integrations_webhookendpoint_changelist"))
    assert endpoint.secret not in change
    assert endpoint.secret not in listing.content.decode()
    assert "whsec_…" in change


def test_admin_refuses_internal_url_with_a_clear_error(admin_client, org, settings):
    # given the production rule
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = False
    # when
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {
            "organization": org.pk,
            "partner_name": "Evil",
            "url": "https://169.254.169.254/latest",
            "event_types": "[]",
            "retry_schedule": "null",
            "breaker_threshold": 10,
            "breaker_probe_seconds": 60,
        },
    )
    # then
    assert response.status_code == 200
    assert "link-local" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_admin_send_test_event_and_replay_delivery(
    admin_client, org, sink, django_capture_on_commit_callbacks
):
    # given
    endpoint, _ = make_endpoint(org, sink.url())
    # when: the "send test event" action
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:integrations_webhookendpoint_changelist"),
            {"action": "send_test_event", "_selected_action": [endpoint.pk]},
        )
    # then
    assert len(sink.requests) == 1
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.DELIVERED
    # and the endpoint page shows health and the delivery with its attempt
    page = admin_client.get(
        reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk])
    ).content.decode()
    assert "success 100.0% over 1 attempts" in page
    detail = admin_client.get(
        reverse("admin:integrations_delivery_change", args=[delivery.pk])
    ).content.decode()
    assert "200" in detail
    # when: the bulk replay action
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:integrations_delivery_changelist"),
            {"action": "replay_selected", "_selected_action": [delivery.pk]},
        )
    # then: re-sent with the same webhook-id
    assert len(sink.requests) == 2
    assert sink.requests[0].headers["webhook-id"] == sink.requests[1].headers["webhook-id"]


def test_delivery_list_is_scoped_to_the_users_organization(client, org, other_org, sink):
    # given: a delivery in another organization
    from programs.tests.factories import MembershipFactory

    endpoint, _ = make_endpoint(other_org, sink.url())
    event = write_event(other_org)
    from integrations import dispatch

    dispatch.fanout([event.pk])
    user = UserFactory(username="staff-acme", is_staff=True, is_superuser=False)
    MembershipFactory(user=user, organization=org, role="admin")
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(codename__endswith="delivery"))
    client.force_login(user)
    # when
    response = client.get(reverse("admin:integrations_delivery_changelist"))
    # then: the other organization's delivery is not listed
    assert response.status_code == 200
    assert dispatch.webhook_id_for(event.pk) not in response.content.decode()
    # while a superuser does see it (the page can show it)
    root = UserFactory(username="root2", is_staff=True, is_superuser=True)
    client.force_login(root)
    listing = client.get(reverse("admin:integrations_delivery_changelist")).content.decode()
    assert dispatch.webhook_id_for(event.pk) in listing
    assert endpoint.partner_name in listing


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("event_types", '["bogus"]', "unknown event type"),
        ("event_types", '{"a": 1}', "a list of at most"),
        ("retry_schedule", "[-1]", "whole seconds"),
        ("retry_schedule", '"abc"', "whole seconds"),
        ("breaker_threshold", "0", "at least 1"),
    ],
)
def test_admin_shows_what_the_service_refuses_as_a_form_error(
    admin_client, org, sink, field, value, message
):
    # given: the page said "added successfully" beside the error, and lost the input
    form = {
        "organization": org.pk,
        "partner_name": "Acme Labs",
        "url": sink.url(),
        "event_types": "[]",
        "enabled": "on",
        "retry_schedule": "null",
        "breaker_threshold": 10,
        "breaker_probe_seconds": 60,
        field: value,
    }
    # when
    response = admin_client.post(reverse("admin:integrations_webhookendpoint_add"), form)
    # then: the form again, with the error by its field
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page and "successfully" not in page
    assert not WebhookEndpoint.objects.exists()


def test_admin_breaker_tuning_is_audited_from_and_to(admin_client, org, sink):
    from programs.models import AuditEvent

    endpoint, _ = make_endpoint(org, sink.url())
    form = {
        "organization": org.pk,
        "partner_name": endpoint.partner_name,
        "url": endpoint.url,
        "event_types": "[]",
        "enabled": "on",
        "retry_schedule": "null",
        "breaker_threshold": 3,
        "breaker_probe_seconds": endpoint.breaker_probe_seconds,
    }
    admin_client.post(
        reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk]), form
    )
    row = AuditEvent.objects.filter(action="webhook_endpoint.updated").latest("id")
    assert row.metadata["changed"]["breaker_threshold"]["to"] == 3
    assert row.metadata["changed"]["breaker_threshold"]["from"] == endpoint.breaker_threshold


def test_deleting_an_endpoint_resolves_its_queue_items(org, sink):
    from integrations.delivery_outcomes import delivery_dead_key, endpoint_down_key
    from integrations.services.webhooks import webhook_endpoint_delete
    from programs.actors import Actor
    from programs.models import OpsException
    from programs.services import exception_raise

    endpoint, _ = make_endpoint(org, sink.url())
    for key in (endpoint_down_key(endpoint.pk), delivery_dead_key(endpoint.pk, "x.y")):
        exception_raise(organization=org, kind="manual", title=key, dedup_key=key)

    webhook_endpoint_delete(endpoint_id=endpoint.pk, actor=Actor.system("test"))

    assert set(OpsException.objects.values_list("state", flat=True)) == {"resolved"}
