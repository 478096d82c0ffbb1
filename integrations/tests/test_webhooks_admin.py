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
