"""Append-only logs point at their parents without a database foreign key
(outbox and partner events -> organization, idempotency records -> API key:
see the models for why). The rules a user relies on still hold, through the
ORM: an organization with events cannot be deleted, and deleting an API key
deletes its idempotency records."""

from datetime import UTC, datetime

import pytest
from django.db.models import ProtectedError

from integrations import idempotency
from integrations.models import IdempotencyRecord, OutboxEvent
from integrations.outbox import outbox_write
from integrations.tests.api_fixtures import make_key
from participants.models import ParticipantEvent
from participants.services import event_ingest
from programs.actors import Actor

pytestmark = pytest.mark.django_db


def test_an_organization_with_outbox_events_cannot_be_deleted(org):
    event = outbox_write(
        organization=org,
        event_type_name="programs.exception.opened",
        payload={"exception_id": 1},
    )
    with pytest.raises(ProtectedError) as refused:
        org.delete()
    assert event in refused.value.protected_objects
    assert OutboxEvent.objects.filter(pk=event.pk).exists()


def test_an_organization_with_partner_events_cannot_be_deleted(org):
    result = event_ingest(
        organization=org,
        event_id="evt-1",
        event_type="device.synced",
        external_ref="REF-UNKNOWN",
        occurred_at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        data={},
        actor=Actor.system("test"),
    )
    with pytest.raises(ProtectedError) as refused:
        org.delete()
    assert result.event in refused.value.protected_objects
    assert ParticipantEvent.objects.filter(pk=result.event.pk).exists()


def test_deleting_an_api_key_deletes_its_idempotency_records(org):
    client, _raw = make_key(org)
    other, _raw = make_key(org, name="other partner")
    for owner in (client, other):
        idempotency.idempotency_begin(
            client=owner, key="k-1", method="POST", path="/api/v1/events/", data={"a": 1}
        )
    client.delete()
    assert list(IdempotencyRecord.objects.values_list("api_client_id", flat=True)) == [other.pk]
