"""The dispatcher's set-based batch path: claim, sign, send, record per batch."""
# ruff: noqa: F811 - pytest fixtures imported from webhook_helpers

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from integrations import dispatch
from integrations.delivery_sink import FastSink
from integrations.models import Attempt, Delivery, DeliveryState
from integrations.signing import generate_secret, sign_headers, signer_for
from integrations.tests.webhook_helpers import (  # noqa: F401 - fixtures
    fast_timeout,
    make_due,
    make_endpoint,
    sink,
    write_event,
)

pytestmark = pytest.mark.django_db


def _events(org, n, **kwargs):
    events = [write_event(org, payload={"exception_id": i, "state": "open"}) for i in range(n)]
    dispatch.fanout([e.pk for e in events])
    return events


def test_claim_carries_each_events_exact_body_shared_across_endpoints(org, sink):
    # given: two endpoints, three events (six deliveries)
    make_endpoint(org, sink.url("/a"), partner_name="A")
    make_endpoint(org, sink.url("/b"), partner_name="B")
    events = _events(org, 3)
    # when
    claimed = dispatch.claim_batch(10)
    # then: every delivery is leased, carries its event's exact bytes, and
    # one event's deliveries share one bytes object (built once per event)
    assert len(claimed) == 6
    assert {c.state for c in claimed} == {DeliveryState.DELIVERING}
    bodies = {e.pk: dispatch.event_body(e) for e in events}
    by_event = {}
    for c in claimed:
        assert c.body == bodies[c.event_id]
        assert c.webhook_id == dispatch.webhook_id_for(c.event_id)
        assert c.endpoint.pk == c.endpoint_id
        by_event.setdefault(c.event_id, []).append(c.body)
    assert all(a is b for a, b in by_event.values())
    rows = Delivery.objects.filter(pk__in=[c.pk for c in claimed])
    assert {(r.state, r.lease_expires_at, r.leased_by) for r in rows} == {
        (DeliveryState.DELIVERING, claimed[0].lease, dispatch.worker_label())
    }


def test_claim_takes_expired_leases_and_due_rows_but_not_future_ones(org, sink):
    # given: one due, one due later, one whose lease ran out
    make_endpoint(org, sink.url())
    due, later, crashed = _events(org, 3)
    Delivery.objects.filter(event=later).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    [lost] = dispatch.claim_batch(1)
    assert lost.event_id == due.pk  # oldest due first
    Delivery.objects.filter(pk=lost.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # when
    claimed = dispatch.claim_batch(10)
    # then: the expired lease is reclaimed first, the future row waits
    assert [c.event_id for c in claimed] == [due.pk, crashed.pk]


def test_batch_query_count_does_not_grow_with_batch_size(org, sink, django_assert_max_num_queries):
    # given: 60 due deliveries to one endpoint
    make_endpoint(org, sink.url())
    _events(org, 60)
    # when/then: claim, send and record of 10 and of 50 take the same
    # statements (set-based: nothing per delivery)
    for size in (10, 50):
        with django_assert_max_num_queries(16) as captured:
            batch = dispatch.claim_batch(size)
            results = dispatch.send_batch(batch, concurrency=4)
            stats = dispatch.record_results(batch, results)
        assert stats == {"delivered": size}
        if size == 10:
            small = len(captured.captured_queries)
        else:
            assert len(captured.captured_queries) == small
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 60
    assert set(Attempt.objects.values_list("number", flat=True)) == {1}


def test_attempts_record_number_status_latency_and_snippet(
    org, sink, django_capture_on_commit_callbacks
):
    # given: the partner fails once, then accepts
    make_endpoint(org, sink.url())
    sink.script("500")
    with django_capture_on_commit_callbacks(execute=True):
        write_event(org)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.RETRYING
    # when
    make_due(delivery)
    dispatch.drain()
    # then: two attempt rows, numbered, with what the partner answered
    attempts = list(Attempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert attempts[0].error_class == "http_500"
    assert attempts[0].response_snippet == "status 500"
    assert attempts[1].response_snippet == "ok"
    assert all(a.started_at.tzinfo is not None for a in attempts)
    assert attempts[0].started_at <= attempts[1].started_at
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count) == (DeliveryState.DELIVERED, 2)


def test_every_sending_thread_delivers_and_failures_go_through_the_state_machine(org, sink):
    # given: 40 deliveries; the partner answers 503 to five of them
    make_endpoint(org, sink.url(), breaker_threshold=100)
    _events(org, 40)
    sink.script(*["503:1"] * 5)
    # when
    stats = dispatch.drain(concurrency=8, batch_size=40)
    # then
    assert stats["delivered"] == 35 and stats["retrying"] == 5
    retrying = Delivery.objects.filter(state=DeliveryState.RETRYING)
    assert retrying.count() == 5
    assert {d.last_error for d in retrying} == {"HTTP 503"}
    assert len({r.headers["webhook-id"] for r in sink.requests}) == 40


def test_a_send_that_raises_is_recorded_as_a_failed_attempt(org, sink, monkeypatch):
    # given: signing blows up for one batch
    make_endpoint(org, sink.url())
    _events(org, 3)

    def broken(_secrets):
        def sign(_msg_id, _body):
            raise RuntimeError("boom")

        return sign

    monkeypatch.setattr(dispatch, "signer_for", broken)
    # when
    stats = dispatch.drain(concurrency=2)
    # then: nothing was sent, every delivery has its failed attempt and retries
    assert stats["retrying"] == 3 and not sink.requests
    assert set(Attempt.objects.values_list("error_class", flat=True)) == {"send_error"}
    assert Delivery.objects.filter(state=DeliveryState.RETRYING).count() == 3


def test_fsm_guard_refuses_a_move_the_state_machine_does_not_allow():
    with pytest.raises(Exception, match="does not allow"):
        dispatch._fsm_target(Delivery.succeed, DeliveryState.PENDING)
    assert dispatch._fsm_target(Delivery.start, DeliveryState.RETRYING) == "delivering"


def test_signer_matches_sign_headers_and_verifies_with_both_secrets():
    # given
    old, new = generate_secret(), generate_secret()
    body = b'{"a":1}'
    # when
    headers = signer_for([new, old])("msg_7", body)
    # then: same headers as sign_headers at that second; each secret verifies
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    assert headers == sign_headers(secrets=[new, old], msg_id="msg_7", timestamp=at, body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"a": 1}
    with pytest.raises(ValueError):
        signer_for([""])


# --- FastSink (the benchmark's sink) --------------------------------------------


def test_fast_sink_records_keep_alive_requests_and_answers_modes():
    with FastSink() as fast:
        fast.script("500", "429:7", "redirect")
        with httpx.Client(trust_env=False) as client:
            codes = [
                client.post(fast.url(), content=b"x" * n, headers={"webhook-id": f"m{n}"})
                for n in (0, 1, 5000, 3)
            ]
        # then
        assert [r.status_code for r in codes] == [500, 429, 302, 200]
        assert codes[1].headers["retry-after"] == "7"
        assert codes[2].headers["location"].startswith("http://169.254.169.254/")
        assert codes[3].text == "ok"
        assert [len(r.body) for r in fast.requests] == [0, 1, 5000, 3]
        assert fast.requests[2].headers["webhook-id"] == "m5000"
        assert fast.requests[0].path == "/hook" and fast.count == 4


def test_fast_sink_latency_reset_and_split_packets():
    with FastSink(latency=0.05) as fast:
        # a request arriving in pieces is answered once it is complete
        with socket.create_connection(("127.0.0.1", fast.port)) as s:
            s.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-")
            s.sendall(b"Length: 4\r\n\r\nab")
            s.sendall(b"cd")
            s.settimeout(2)
            reply = s.recv(1000)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")
        assert fast.requests[0].body == b"abcd"
        fast.script("reset")
        with httpx.Client(trust_env=False) as client, pytest.raises(httpx.HTTPError):
            client.post(fast.url(), content=b"{}")


def test_drain_into_fast_sink(org):
    # given
    with FastSink() as fast:
        make_endpoint(org, fast.url())
        events = _events(org, 25)
        # when
        stats = dispatch.drain(concurrency=3, batch_size=10)
        # then
        assert stats["delivered"] == 25
        bodies = {r.headers["webhook-id"]: r.body for r in fast.requests}
        assert bodies == {dispatch.webhook_id_for(e.pk): dispatch.event_body(e) for e in events}


def test_a_slow_partner_gets_no_send_after_the_batchs_send_window(org, sink, settings):
    # given: a 2 s lease (so a 1 s send window), one sending thread, and a
    # partner that takes 1.5 s to answer the first of three deliveries
    settings.BATON_WEBHOOK_LEASE_SECONDS = 2
    make_endpoint(org, sink.url())
    _events(org, 3)
    sink.script("timeout")
    batch = dispatch.claim_batch(10)
    # when
    results = dispatch.send_batch(batch, concurrency=1)
    stats = dispatch.record_results(batch, results)
    # then: the first was sent and recorded; the other two were not sent
    # after the window closed (another worker could have reclaimed them once
    # the lease ran out) but handed back, due now, with no attempt row
    assert stats == {"delivered": 1, "released": 2}
    released = Delivery.objects.filter(state=DeliveryState.PENDING)
    assert released.count() == 2
    assert {(d.lease_expires_at, d.leased_by, d.attempt_count) for d in released} == {(None, "", 0)}
    assert Attempt.objects.count() == 1
    # and: the next drain delivers them, each once
    dispatch.drain(max_seconds=5)
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 3
    assert Attempt.objects.count() == 3
    assert len(sink.requests) == 3
