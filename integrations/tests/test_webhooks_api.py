"""/api/v1/webhook-endpoints/: CRUD, secret shown once, SSRF, S1/S2 checks."""
# ruff: noqa: F811 - pytest fixtures imported from webhook_helpers

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from integrations.auth import api_client_create
from integrations.models import WebhookEndpoint
from integrations.tests.webhook_helpers import ACTOR, make_endpoint, sink  # noqa: F401
from programs.models import AuditEvent

pytestmark = pytest.mark.django_db
BASE = "/api/v1/webhook-endpoints/"


def _client(org, **kwargs):
    _key, raw = api_client_create(organization=org, name="partner", actor=ACTOR, **kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api(org):
    return _client(org)


def test_create_returns_secret_once_and_lists_without_it(api, org, sink):
    # when
    response = api.post(
        BASE,
        {"partner_name": "Acme Labs", "url": sink.url(), "event_types": ["programs.exception.*"]},
        format="json",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert endpoint.secret == body["secret"]
    listing = api.get(BASE)
    assert listing.status_code == 200
    assert body["secret"] not in listing.content.decode()
    assert [e["id"] for e in listing.json()["results"]] == [endpoint.pk]
    detail = api.get(f"{BASE}{endpoint.pk}/")
    assert "secret" not in detail.json()
    # and the audit row does not carry the secret
    audit = AuditEvent.objects.get(action="webhook_endpoint.created")
    assert body["secret"] not in json.dumps(audit.metadata)


def test_unsafe_url_is_422_naming_the_field(api, settings):
    # given the production rule
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = False
    # when
    response = api.post(BASE, {"partner_name": "x", "url": "https://10.0.0.8/hook"}, format="json")
    # then
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["path"] == "$.url"
    assert "private" in problem["errors"][0]["message"]
    assert not WebhookEndpoint.objects.exists()


def test_unknown_event_type_and_read_only_fields_are_rejected(api, sink):
    # when
    response = api.post(
        BASE,
        {
            "partner_name": "x",
            "url": sink.url(),
            "event_types": ["no.such.event"],
        },
        format="json",
    )
    # then
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$.event_types[0]"
    # S2: state/organization/secret are not accepted
    response = api.post(
        BASE,
        {"partner_name": "x", "url": sink.url(), "secret": "whsec_AAAA", "organization": 9},
        format="json",
    )
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert paths == {"$.secret", "$.organization"}


def test_patch_updates_and_rechecks_url_and_delete_removes(api, org, sink, settings):
    # given
    endpoint, _ = make_endpoint(org, sink.url())
    # when
    response = api.patch(
        f"{BASE}{endpoint.pk}/", {"partner_name": "Renamed", "enabled": False}, format="json"
    )
    # then
    assert response.status_code == 200
    assert response.json()["partner_name"] == "Renamed"
    assert response.json()["enabled"] is False
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = False
    bad = api.patch(f"{BASE}{endpoint.pk}/", {"url": "https://[::1]/x"}, format="json")
    assert bad.status_code == 422
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = True
    # when
    gone = api.delete(f"{BASE}{endpoint.pk}/")
    # then
    assert gone.status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_send_test_and_rotate_secret(api, org, sink, django_capture_on_commit_callbacks):
    # given
    endpoint, old_secret = make_endpoint(org, sink.url())
    # when
    rotated = api.post(f"{BASE}{endpoint.pk}/rotate-secret/", {"overlap_hours": 2}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        tested = api.post(f"{BASE}{endpoint.pk}/test/", format="json")
    # then
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    valid_until = rotated.json()["previous_secret_valid_until"]
    assert valid_until.endswith("Z")  # written like every other timestamp (was "+00:00")
    shown = api.get(f"{BASE}{endpoint.pk}/").json()["previous_secret_valid_until"]
    assert shown == valid_until
    assert tested.status_code == 202
    request = sink.requests[-1]
    assert request.headers["webhook-id"] == tested.json()["webhook_id"]
    Webhook(new_secret).verify(request.body, request.headers)
    Webhook(old_secret).verify(request.body, request.headers)


def test_other_organization_cannot_see_or_touch_endpoints(org, other_org, sink):
    # given
    endpoint, _ = make_endpoint(org, sink.url())
    intruder = _client(other_org)
    # when / then
    assert intruder.get(f"{BASE}{endpoint.pk}/").status_code == 404
    assert (
        intruder.patch(f"{BASE}{endpoint.pk}/", {"enabled": False}, format="json").status_code
        == 404
    )
    assert intruder.delete(f"{BASE}{endpoint.pk}/").status_code == 404
    assert intruder.post(f"{BASE}{endpoint.pk}/test/").status_code == 404
    assert intruder.get(BASE).json()["results"] == []
    assert APIClient().get(BASE).status_code == 401
    assert WebhookEndpoint.objects.get().enabled is True


def test_read_only_and_program_scoped_keys_cannot_write(org, program, sink):
    # given
    reader = _client(org, read_only=True)
    scoped = _client(org, programs=[program])
    payload = {"partner_name": "x", "url": sink.url()}
    # when / then
    assert reader.get(BASE).status_code == 200
    assert reader.post(BASE, payload, format="json").status_code == 403
    assert scoped.post(BASE, payload, format="json").status_code == 403
    assert not WebhookEndpoint.objects.exists()
