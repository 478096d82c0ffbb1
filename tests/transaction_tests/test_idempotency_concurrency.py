"""R6: 32 concurrent requests with one Idempotency-Key create exactly one object,
and every completed response is byte-identical (the rest get 409 in flight)."""

import threading

import pytest
from django.db import connection

from integrations.tests.api_fixtures import PartnerHttp, make_key
from participants.models import Enrollment, Participant


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_32_way_concurrent_replay_creates_one_object(org, program):
    # given
    _client, raw = make_key(org)
    body = {"program": "dpp", "external_ref": "REF-CONCURRENT"}
    barrier = threading.Barrier(32)
    results = []
    lock = threading.Lock()

    def call():
        http = PartnerHttp(raw)
        barrier.wait()
        try:
            response = http.post("/api/v1/referrals/", body, idempotency_key="same-key-32")
            with lock:
                results.append((response.status_code, response.content))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=call) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert len(results) == 32
    statuses = [status for status, _ in results]
    assert set(statuses) <= {201, 409}, statuses
    completed = {content for status, content in results if status == 201}
    assert len(completed) == 1  # every non-409 answer is the same bytes
    assert Enrollment.objects.count() == 1
    assert Participant.objects.count() == 1
    # and a replay afterwards returns the stored response
    after = PartnerHttp(raw).post("/api/v1/referrals/", body, idempotency_key="same-key-32")
    assert (after.status_code, after.content) == (201, completed.pop())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_events_with_one_id_store_one_event(org, program):
    # given
    from participants.models import ParticipantEvent

    _client, raw = make_key(org)
    body = {
        "id": "evt-race",
        "type": "eligibility.screened",
        "external_ref": "REF-X",
        "occurred_at": "2026-01-05T10:00:00Z",
        "data": {},
    }
    barrier = threading.Barrier(16)
    contents = []

    def call():
        barrier.wait()
        try:
            response = PartnerHttp(raw).post("/api/v1/events/", body)
            contents.append((response.status_code, response.content))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert {status for status, _ in contents} == {202}
    assert len({content for _, content in contents}) == 1
    assert ParticipantEvent.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_while_the_first_is_in_flight_gets_409_then_the_replay(org, program):
    # given: a first request with the key that has claimed it and is still
    # running (its transaction open in another thread)
    from django.db import transaction

    from integrations import idempotency

    client, raw = make_key(org)
    body = {"program": "dpp", "external_ref": "REF-INFLIGHT"}
    claimed, finish = threading.Event(), threading.Event()

    def first_request():
        try:
            with transaction.atomic():
                claim = idempotency.idempotency_begin(
                    client=client,
                    key="slow-key",
                    method="POST",
                    path="/api/v1/referrals/",
                    data=body,
                )
                claimed.set()
                finish.wait(10)
                idempotency.idempotency_finish(
                    claim, status_code=201, body=b'{"first":true}', content_type="application/json"
                )
        finally:
            connection.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    assert claimed.wait(10)
    # when: the same key and body arrive meanwhile
    during = PartnerHttp(raw).post("/api/v1/referrals/", body, idempotency_key="slow-key")
    finish.set()
    thread.join()
    after = PartnerHttp(raw).post("/api/v1/referrals/", body, idempotency_key="slow-key")
    # then: 409 at once (no waiting, nothing created), and the first
    # request's stored answer afterwards
    assert during.status_code == 409
    assert during.json()["type"].endswith("idempotency-in-flight")
    assert Enrollment.objects.count() == 0
    assert (after.status_code, after.content) == (201, b'{"first":true}')
    assert after["Idempotent-Replayed"] == "true"
