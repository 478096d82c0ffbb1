"""Outbound webhooks end to end against a real local HTTP sink (R3, R4 outbound)."""
# ruff: noqa: F811 - pytest fixtures imported from webhook_helpers

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from integrations import dispatch
from integrations.models import Attempt, BreakerState, Delivery, DeliveryState, WebhookEndpoint
from integrations.services.webhooks import (
    delivery_replay,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_endpoint_update,
)
from integrations.tests.webhook_helpers import (  # noqa: F401 - fixtures
    ACTOR,
    fast_timeout,
    make_due,
    make_endpoint,
    sink,
    write_event,
)
from programs.models import OpsException
from programs.services import exception_raise, exception_retry

pytestmark = pytest.mark.django_db


def _deliver(org, django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        event = write_event(org, **kwargs)
    return event


def test_event_committed_is_delivered_signed_after_commit(
    org, sink, django_capture_on_commit_callbacks
):
    # given
    endpoint, secret = make_endpoint(org, sink.url())
    # when: a business write raises an exception item (which writes an outbox event)
    with django_capture_on_commit_callbacks(execute=True):
        exception_raise(organization=org, kind="manual", title="Check", dedup_key="k1")
    # then: the partner received it once, signed, verifiable by standardwebhooks
    assert len(sink.requests) == 1
    request = sink.requests[0]
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "programs.exception.opened"
    assert payload["data"]["kind"] == "manual"
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert delivery.state == DeliveryState.DELIVERED
    assert request.headers["webhook-id"] == delivery.webhook_id
    assert delivery.attempts.get().status_code == 200


def test_fanout_is_idempotent_and_respects_event_filter(org, sink):
    # given
    wanted, _ = make_endpoint(org, sink.url("/a"), event_types=["programs.exception.opened"])
    make_endpoint(org, sink.url("/b"), event_types=["programs.exception.resolved"])
    everything, _ = make_endpoint(org, sink.url("/c"), event_types=[])
    event = write_event(org)
    # when: the hook and the sweep both fan it out
    dispatch.fanout([event.pk])
    dispatch.OutboxEvent.objects.filter(pk=event.pk).update(dispatched_at=None)
    dispatch.sweep_outbox()
    # then
    assert set(Delivery.objects.values_list("endpoint_id", flat=True)) == {
        wanted.pk,
        everything.pk,
    }
    assert Delivery.objects.count() == 2


def test_sweep_delivers_events_whose_hook_never_ran(org, sink):
    # given: an event committed without its after-commit hook (crash)
    make_endpoint(org, sink.url())
    write_event(org)
    # when
    from integrations.tasks import webhooks_dispatch_tick

    result = webhooks_dispatch_tick()
    # then
    assert result["swept_events"] == 1
    assert len(sink.requests) == 1


def test_rotated_secret_signs_with_both_until_overlap_ends(
    org, sink, django_capture_on_commit_callbacks
):
    # given
    endpoint, old_secret = make_endpoint(org, sink.url())
    new_secret = webhook_endpoint_rotate_secret(
        endpoint_id=endpoint.pk, actor=ACTOR, overlap=timedelta(hours=1)
    )
    # when
    _deliver(org, django_capture_on_commit_callbacks)
    # then: two signatures; partners on either secret verify
    request = sink.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old_secret).verify(request.body, request.headers)
    Webhook(new_secret).verify(request.body, request.headers)
    # and after the overlap only the new secret signs
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    _deliver(org, django_capture_on_commit_callbacks)
    request = sink.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(request.body, request.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(old_secret).verify(request.body, request.headers)


def test_send_test_event_reaches_only_that_endpoint(org, sink, django_capture_on_commit_callbacks):
    # given
    target, _ = make_endpoint(org, sink.url("/target"))
    make_endpoint(org, sink.url("/other"))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        webhook_endpoint_send_test(endpoint_id=target.pk, actor=ACTOR)
    # then
    assert [r.path for r in sink.requests] == ["/target"]
    assert json.loads(sink.requests[0].body)["type"] == "integrations.endpoint.test"


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [
        ("500", "http_500"),
        ("timeout", "timeout"),
        ("reset", "connection_reset"),
        ("redirect", "redirect"),
    ],
)
def test_failures_retry_on_schedule_with_jitter(
    org, sink, fast_timeout, django_capture_on_commit_callbacks, mode, error_class
):
    # given
    endpoint, _ = make_endpoint(org, sink.url(), retry_schedule=[0, 300, 3600])
    sink.script(mode)
    # when
    before = timezone.now()
    _deliver(org, django_capture_on_commit_callbacks)
    # then: a failure recorded, the next try ~300 s later (jitter 0.9-1.2x)
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert delivery.state == DeliveryState.RETRYING
    attempt = delivery.attempts.get()
    assert attempt.error_class == error_class
    assert not attempt.succeeded
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 270 <= wait <= 361
    # a redirect is never followed: exactly one request reached anything
    assert len(sink.requests) == 1
    # when the retry comes due it succeeds with the same id and body
    make_due(delivery)
    dispatch.drain()
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    first, second = sink.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body


def test_retry_after_is_honoured_on_429_and_503(org, sink, django_capture_on_commit_callbacks):
    # given
    endpoint, _ = make_endpoint(org, sink.url(), retry_schedule=[0, 5, 60])
    sink.script("429:120")
    # when
    before = timezone.now()
    _deliver(org, django_capture_on_commit_callbacks)
    # then: waits the partner's 120 s, not the 5 s schedule step
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert delivery.attempts.get().status_code == 429
    assert (delivery.next_attempt_at - before).total_seconds() >= 119
    # and 503 with a Retry-After too
    sink.script("503:600")
    make_due(delivery)
    before = timezone.now()
    dispatch.drain()
    delivery.refresh_from_db()
    assert (delivery.next_attempt_at - before).total_seconds() >= 599


def test_jitter_spreads_retries(org, sink, django_capture_on_commit_callbacks):
    # given
    endpoint, _ = make_endpoint(org, sink.url(), retry_schedule=[0, 1000], breaker_threshold=50)
    sink.default = "500"
    # when: 20 events fail once
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(20):
            write_event(org, payload={"exception_id": i})
    # then: their next attempts are not all the same instant
    waits = {
        round((d.next_attempt_at - d.created_at).total_seconds())
        for d in Delivery.objects.filter(endpoint=endpoint)
    }
    assert len(waits) > 5
    assert all(850 <= w <= 1250 for w in waits)


def test_410_disables_endpoint_holds_backlog_and_opens_one_exception(
    org, sink, django_capture_on_commit_callbacks
):
    # given: one delivery waiting and the partner retired the URL
    endpoint, _ = make_endpoint(org, sink.url(), retry_schedule=[0, 60])
    sink.script("500")
    _deliver(org, django_capture_on_commit_callbacks)
    waiting = Delivery.objects.get(endpoint=endpoint)
    sink.script("410")
    # when
    _deliver(org, django_capture_on_commit_callbacks)
    # then
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    assert "410" in endpoint.disabled_reason
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DISABLED}
    waiting.refresh_from_db()
    items = OpsException.objects.filter(kind="endpoint_down")
    assert items.count() == 1
    # when a coordinator re-enables it, held deliveries are sent
    with django_capture_on_commit_callbacks(execute=True):
        webhook_endpoint_update(endpoint_id=endpoint.pk, actor=ACTOR, enabled=True)
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    assert items.get().state == "resolved"


def test_exhausted_deliveries_go_dead_with_one_exception_per_endpoint_and_type(
    org, sink, django_capture_on_commit_callbacks
):
    # given
    make_endpoint(org, sink.url(), retry_schedule=[0, 1], breaker_threshold=50)
    sink.default = "500"
    with django_capture_on_commit_callbacks(execute=True):
        first = write_event(org, payload={"exception_id": 1})
        second = write_event(org, payload={"exception_id": 2})
    ours = Delivery.objects.filter(event__in=[first, second])
    # when: the last retry fails too
    make_due(*ours)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.drain()
    # then
    assert set(ours.values_list("state", flat=True)) == {DeliveryState.DEAD}
    item = OpsException.objects.get(kind="delivery_dead")
    assert Attempt.objects.filter(delivery__in=ours).count() == 4
    # when the partner is fixed and the coordinator replays from the queue
    sink.default = "ok"
    ids = {dispatch.webhook_id_for(first.pk), dispatch.webhook_id_for(second.pk)}
    bodies = {r.headers["webhook-id"]: r.body for r in sink.requests}
    sent_before = len(sink.requests)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = exception_retry(exception_id=item.pk, actor=ACTOR)
    # then: same webhook-ids and bodies, and the item resolves itself
    assert "replayed 2" in outcome
    replayed = [r for r in sink.requests[sent_before:] if r.headers["webhook-id"] in ids]
    assert len(replayed) == 2
    assert all(bodies[r.headers["webhook-id"]] == r.body for r in replayed)
    assert set(ours.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    item.refresh_from_db()
    assert item.state == "resolved" and item.auto_resolved


def test_dead_deliveries_of_one_endpoint_and_type_share_one_exception(
    org, sink, django_capture_on_commit_callbacks
):
    # given: dead letters in two separate drains
    make_endpoint(
        org,
        sink.url(),
        retry_schedule=[0],
        breaker_threshold=50,
        event_types=["programs.exception.resolved"],
    )
    sink.default = "500"
    # when
    for i in range(3):
        _deliver(
            org,
            django_capture_on_commit_callbacks,
            event_type="programs.exception.resolved",
            payload={"exception_id": i},
        )
    # then: one active item, counting three occurrences
    assert Delivery.objects.filter(state=DeliveryState.DEAD).count() == 3
    item = OpsException.objects.get(kind="delivery_dead")
    assert item.occurrences == 3
    assert item.dedup_key.endswith(":programs.exception.resolved")


def test_bulk_replay_resends_with_same_webhook_id(org, sink, django_capture_on_commit_callbacks):
    # given: a delivered delivery
    make_endpoint(org, sink.url())
    _deliver(org, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        count = delivery_replay(delivery_ids=[delivery.pk], actor=ACTOR)
    # then
    assert count == 1
    assert len(sink.requests) == 2
    assert sink.requests[0].headers["webhook-id"] == sink.requests[1].headers["webhook-id"]
    assert sink.requests[0].body == sink.requests[1].body


def test_circuit_breaker_opens_once_probes_and_recovers(
    org, sink, django_capture_on_commit_callbacks
):
    # given: threshold 3, partner down
    endpoint, _ = make_endpoint(
        org, sink.url(), retry_schedule=[0, 3600], breaker_threshold=3, breaker_probe_seconds=30
    )
    sink.default = "500"
    # when: 5 events fail
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(5):
            write_event(org, payload={"exception_id": i})
    # then: the breaker opened and raised ONE endpoint_down item
    endpoint.refresh_from_db()
    assert endpoint.breaker_state == BreakerState.OPEN
    assert OpsException.objects.filter(kind="endpoint_down").count() == 1
    # when: more events arrive while open, nothing is sent
    sent = len(sink.requests)
    with django_capture_on_commit_callbacks(execute=True):
        write_event(org, payload={"exception_id": 99})
    assert len(sink.requests) == sent
    # when: the probe is due but the partner is still down, one request only
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        breaker_next_probe_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.drain()
    assert len(sink.requests) == sent + 1
    endpoint.refresh_from_db()
    assert endpoint.breaker_state == BreakerState.OPEN
    # when: the partner recovers and the next probe succeeds
    sink.default = "ok"
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        breaker_next_probe_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.drain()
    # then: the backlog drained and the item resolved itself
    endpoint.refresh_from_db()
    assert endpoint.breaker_state == BreakerState.CLOSED
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    item = OpsException.objects.get(kind="endpoint_down")
    assert item.state == "resolved" and item.auto_resolved


def test_lease_expired_delivery_is_reclaimed_with_same_id_and_body(org, sink):
    # given: a worker claimed a delivery and died before recording anything
    make_endpoint(org, sink.url())
    event = write_event(org)
    dispatch.fanout([event.pk])
    claimed = dispatch.claim_batch(10)
    assert [d.state for d in claimed] == [DeliveryState.DELIVERING]
    assert dispatch.claim_batch(10) == []  # leased: nobody else takes it
    Delivery.objects.filter(pk=claimed[0].pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # when
    dispatch.drain()
    # then
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.DELIVERED
    assert sink.requests[0].headers["webhook-id"] == delivery.webhook_id
    assert sink.requests[0].body == dispatch.event_body(event)


def test_stale_worker_result_does_not_overwrite_reclaimed_delivery(org, sink):
    # given: worker A claimed, its lease ran out, worker B reclaimed and delivered
    make_endpoint(org, sink.url())
    event = write_event(org)
    dispatch.fanout([event.pk])
    batch_a = dispatch.claim_batch(10)
    Delivery.objects.filter(pk=batch_a[0].pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.drain()
    # when: worker A finally records its failed send
    results_a = {
        batch_a[0].pk: dispatch.SendResult(started_at=timezone.now(), error_class="timeout")
    }
    stats = dispatch.record_results(batch_a, results_a)
    # then: the delivery stays delivered; A's attempt is kept for the record
    assert stats == {"stale": 1}
    assert Delivery.objects.get().state == DeliveryState.DELIVERED
    assert Attempt.objects.count() == 2


def test_deliveries_appear_on_the_participant_timeline(org, sink):
    # given: a delivered event of enrollment 42 and one of another enrollment
    from types import SimpleNamespace

    from programs.registries import registry

    make_endpoint(org, sink.url(), partner_name="Coach Co")
    mine = write_event(org, sequence_key="enrollment:42", sequence=1)
    write_event(org, sequence_key="enrollment:43", sequence=1)
    dispatch.fanout(None)
    dispatch.drain()
    contributor = next(
        c for c in registry.timeline_contributors if c.__name__ == "delivery_timeline_rows"
    )
    # when (programs never imports participants: an object with a pk stands in)
    rows = list(contributor(SimpleNamespace(pk=42)))
    # then
    assert len(rows) == 1
    assert rows[0].title == f"Webhook {mine.event_type} to Coach Co"
    assert rows[0].detail.startswith("delivered, 1 attempt(s)")
    assert rows[0].url.endswith(f"/delivery/{Delivery.objects.get(event=mine).pk}/change/")
