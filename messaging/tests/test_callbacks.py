"""Vendor callbacks: verification, replays, unknown ids, opt-outs, PHI stripping."""

from datetime import UTC, datetime, timedelta

import pytest

from messaging.models import CallbackLog, MessageState, OptOut
from messaging.services import messages_dispatch_due
from messaging.tests.conftest import post_callback
from programs.models import AuditEvent

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.fixture
def sent_message(program, schedule, webhook_connector):
    program.quiet_hours_start = program.quiet_hours_end = None
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
    message, _ = schedule()
    messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    return message


def test_delivered_callback_marks_the_message_delivered(client, sent_message, webhook_connector):
    response = post_callback(
        client, webhook_connector, {"type": "delivered", "message_id": sent_message.pk}
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "applied"
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.DELIVERED


def test_replayed_callback_changes_nothing(client, sent_message, webhook_connector):
    payload = {"type": "failed", "message_id": sent_message.pk, "error": "carrier rejected"}
    first = post_callback(client, webhook_connector, payload, msg_id="cb_same")
    replays = [
        post_callback(client, webhook_connector, payload, msg_id="cb_same") for _ in range(5)
    ]
    assert first.json()["status"] == "applied"
    assert {r.status_code for r in replays} == {200}
    assert {r.json()["status"] for r in replays} == {"duplicate"}
    assert AuditEvent.objects.filter(action="message.failed").count() == 1


def test_same_status_under_a_new_webhook_id_is_ignored(client, sent_message, webhook_connector):
    payload = {"type": "delivered", "message_id": sent_message.pk}
    post_callback(client, webhook_connector, payload, msg_id="cb_a")
    again = post_callback(client, webhook_connector, payload, msg_id="cb_b")
    assert again.json() == {
        "status": "ignored",
        "detail": "already delivered",
        "message_id": sent_message.pk,
        "stripped": [],
    }
    assert AuditEvent.objects.filter(action="message.delivered").count() == 1


def test_unknown_message_id_is_404_problem_json(client, sent_message, webhook_connector):
    response = post_callback(client, webhook_connector, {"type": "delivered", "message_id": 999999})
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert "999999" in response.json()["detail"]


def test_another_organizations_message_is_404(client, sent_message, other_org, webhook_connector):
    from integrations.signing import generate_secret
    from messaging.models import ChannelConnector

    other = ChannelConnector.objects.create(
        organization=other_org,
        slug="x",
        name="x",
        kind="webhook",
        url=webhook_connector.url,
        secret=generate_secret(),
    )
    response = post_callback(client, other, {"type": "delivered", "message_id": sent_message.pk})
    assert response.status_code == 404
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


def test_unknown_connector_is_404(client, sent_message, webhook_connector):
    body = b'{"type": "delivered"}'
    response = client.post(
        "/api/v1/messaging/callbacks/987654/", data=body, content_type="application/json"
    )
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM


def test_bad_signature_is_401(client, sent_message, webhook_connector):
    from integrations.signing import generate_secret

    response = post_callback(
        client,
        webhook_connector,
        {"type": "delivered", "message_id": sent_message.pk},
        secret=generate_secret(),
    )
    assert response.status_code == 401
    assert response.json()["code"] == "bad_signature"
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


def test_stale_timestamp_is_401(client, sent_message, webhook_connector):
    response = post_callback(
        client,
        webhook_connector,
        {"type": "delivered", "message_id": sent_message.pk},
        timestamp=datetime.now(tz=UTC) - timedelta(seconds=301),
    )
    assert response.status_code == 401
    assert response.json()["code"] == "stale"


def test_bad_type_is_422_naming_the_field(client, sent_message, webhook_connector):
    response = post_callback(client, webhook_connector, {"type": "read", "message_id": 1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$.type"


def test_a_nul_character_is_422_naming_the_field_and_changes_nothing(
    client, sent_message, webhook_connector
):
    # given: PostgreSQL stores no NUL character in text or jsonb
    payload = {
        "type": "delivered",
        "message_id": sent_message.pk,
        "vendor_message_id": "vm-\u0000-1",
    }
    # when
    response = post_callback(client, webhook_connector, payload)
    # then
    assert response.status_code == 422
    assert response["Content-Type"] == PROBLEM
    assert response.json()["errors"][0]["path"] == "$.vendor_message_id"
    assert "NUL" in response.json()["errors"][0]["message"]
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT
    assert not CallbackLog.objects.exists()


def test_a_callback_nested_too_deep_is_422_and_changes_nothing(
    client, sent_message, webhook_connector
):
    nested: list = []
    for _ in range(200):
        nested = [nested]
    payload = {"type": "delivered", "message_id": sent_message.pk, "extra": nested}
    response = post_callback(client, webhook_connector, payload)
    assert response.status_code == 422
    assert "deeper than 64 levels" in response.json()["detail"]
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


def test_a_callback_with_an_infinite_number_is_422_and_changes_nothing(
    client, sent_message, webhook_connector
):
    # json.dumps writes `Infinity`, which Python's json reads back but no
    # jsonb column stores (a 500 on PostgreSQL)
    payload = {"type": "delivered", "message_id": sent_message.pk, "cost": float("inf")}
    response = post_callback(client, webhook_connector, payload)
    assert response.status_code == 422
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT
    assert not CallbackLog.objects.exists()


def test_phone_number_and_message_text_are_stripped_not_500(
    client, sent_message, webhook_connector
):
    # given a vendor that echoes the phone number and the reply text
    payload = {
        "type": "delivered",
        "message_id": sent_message.pk,
        "to": "+1 (555) 123-4567",
        "text": "Hi Jane, your coach is waiting",
        "error": "delivered to 555-123-4567",
    }
    # when
    response = post_callback(client, webhook_connector, payload)
    # then it is applied, and nothing identifying is stored
    assert response.status_code == 200
    stripped = {s["path"]: s["kind"] for s in response.json()["stripped"]}
    assert stripped == {"$.error": "phone", "$.text": "message_text", "$.to": "phone"}
    log = CallbackLog.objects.get()
    assert log.payload == {"type": "delivered", "message_id": sent_message.pk}
    assert "555" not in str(log.payload) and "Jane" not in str(log.payload)
    note = AuditEvent.objects.get(action="messaging.callback.fields_stripped")
    assert note.metadata["stripped"] == response.json()["stripped"]
    assert "555" not in str(note.metadata)
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.DELIVERED


def test_stop_records_an_opt_out_with_an_audit_row(client, sent_message, webhook_connector):
    response = post_callback(
        client, webhook_connector, {"type": "opted_out", "message_id": sent_message.pk}
    )
    assert response.json()["status"] == "applied"
    opt_out = OptOut.objects.get()
    assert (opt_out.participant_ref, opt_out.channel) == (sent_message.participant_ref, "sms")
    assert AuditEvent.objects.filter(action="messaging.opt_out.recorded").count() == 1


def test_opt_out_by_participant_ref_and_channel(client, sent_message, webhook_connector):
    response = post_callback(
        client,
        webhook_connector,
        {"type": "opted_out", "participant_ref": "P-9999", "channel": "email"},
    )
    assert response.status_code == 200
    assert OptOut.objects.filter(participant_ref="P-9999", channel="email").exists()
