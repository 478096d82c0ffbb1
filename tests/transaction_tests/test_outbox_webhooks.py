"""R2 for the outbox and webhooks: with real commits, a change and its outbox
row commit together or not at all, and only committed events reach partners.
Also the skip_locked claim: concurrent dispatchers never lease one delivery twice."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from integrations import dispatch
from integrations.delivery_sink import RecordingSink
from integrations.models import Delivery, DeliveryState, OutboxEvent, WebhookEndpoint
from integrations.outbox import outbox_write
from integrations.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
)
from programs.actors import Actor
from programs.models import AuditEvent, OpsException
from programs.services import exception_raise
from programs.tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor.system("test")


class Boom(Exception):
    pass


@pytest.fixture
def sink():
    with RecordingSink() as running:
        yield running


@pytest.fixture
def endpoint(sink):
    org = OrganizationFactory(slug="r2", name="R2 Org")
    created, _ = webhook_endpoint_create(
        organization=org, partner_name="R2", url=sink.url(), actor=ACTOR
    )
    return created


def test_rolled_back_change_leaves_no_outbox_row_and_sends_nothing(endpoint, sink):
    # given
    events_before = OutboxEvent.objects.count()
    # when: the business write succeeds, then the transaction rolls back
    with pytest.raises(Boom), transaction.atomic():
        exception_raise(
            organization=endpoint.organization_id, kind="manual", title="x", dedup_key="r2"
        )
        raise Boom
    # then
    assert OpsException.objects.count() == 0
    assert OutboxEvent.objects.count() == events_before
    assert Delivery.objects.count() == 0
    assert sink.requests == []


def test_committed_change_commits_its_outbox_row_and_is_delivered(endpoint, sink):
    # when: the same write commits (the after-commit hook runs for real)
    exception_raise(organization=endpoint.organization_id, kind="manual", title="x", dedup_key="r2")
    # then
    item = OpsException.objects.get()
    event = OutboxEvent.objects.get(event_type="programs.exception.opened")
    assert event.payload["exception_id"] == item.pk
    assert event.dispatched_at is not None
    assert Delivery.objects.get(event=event).state == DeliveryState.DELIVERED
    assert len(sink.requests) == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda ep: webhook_endpoint_send_test(endpoint_id=ep.pk, actor=ACTOR),
        lambda ep: webhook_endpoint_rotate_secret(endpoint_id=ep.pk, actor=ACTOR),
    ],
    ids=["send_test", "rotate_secret"],
)
def test_rollback_after_each_webhook_service_undoes_row_audit_and_event(endpoint, sink, write):
    # given
    counts = (OutboxEvent.objects.count(), AuditEvent.objects.count())
    secret = WebhookEndpoint.objects.get(pk=endpoint.pk).secret
    # when
    with pytest.raises(Boom), transaction.atomic():
        write(endpoint)
        raise Boom
    # then
    assert (OutboxEvent.objects.count(), AuditEvent.objects.count()) == counts
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    assert sink.requests == []


def test_outbox_write_outside_a_transaction_is_refused(endpoint):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        outbox_write(
            organization=endpoint.organization_id,
            event_type_name="programs.exception.opened",
            payload={},
        )


@pytest.mark.postgres
def test_concurrent_claims_never_lease_a_delivery_twice(endpoint):
    # given: 200 due deliveries
    with transaction.atomic():
        for i in range(200):
            outbox_write(
                organization=endpoint.organization_id,
                event_type_name="programs.exception.resolved",
                payload={"exception_id": i},
            )
    # the after-commit hook drained them already; make them due again
    Delivery.objects.all().delete()
    OutboxEvent.objects.update(dispatched_at=None)
    dispatch.sweep_outbox()
    assert Delivery.objects.filter(state=DeliveryState.PENDING).count() == 200
    # when: 8 dispatchers claim at once
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        try:
            while True:
                batch = dispatch.claim_batch(7)
                if not batch:
                    break
                with lock:
                    claimed.extend(d.pk for d in batch)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: every delivery leased exactly once
    assert len(claimed) == 200
    assert len(set(claimed)) == 200
