"""R6 for the batch endpoint: 12 concurrent identical batches with one
Idempotency-Key store one set of events; every completed answer is the same
bytes, and a request that arrives while the first is in flight gets 409."""

import threading

import pytest
from django.db import connection

from integrations.models import IdempotencyRecord, OutboxEvent
from integrations.tests.api_fixtures import PartnerHttp, make_key
from participants.models import ParticipantEvent, StepInstance, StepState
from participants.services import enrollment_open, participant_upsert
from programs.actors import Actor

SYSTEM = Actor.system("test")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_batches_with_one_key_store_one_set(org, program):
    # given 20 participants with an open eligibility step, and one batch for them
    _client, raw = make_key(org)
    for i in range(20):
        participant, _ = participant_upsert(organization=org, external_ref=f"C-{i}", actor=SYSTEM)
        enrollment_open(participant=participant, program=program, actor=SYSTEM)
    events = [
        {
            "id": f"batch-evt-{i}",
            "type": "eligibility.screened" if i < 20 else "device.synced",
            "external_ref": f"C-{i % 20}",
            "occurred_at": "2026-01-05T10:00:00Z",
            "data": {"n": i},
        }
        for i in range(40)
    ]
    threads_n = 12
    barrier = threading.Barrier(threads_n)
    answers = []
    lock = threading.Lock()

    def call():
        http = PartnerHttp(raw)
        barrier.wait()
        try:
            response = http.post(
                "/api/v1/events/batch/", {"events": events}, idempotency_key="batch-key-1"
            )
            with lock:
                answers.append((response.status_code, response.content))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=call) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then one set of events, steps and outbox rows, one stored response
    assert len(answers) == threads_n
    assert {status for status, _ in answers} <= {200, 409}
    completed = {content for status, content in answers if status == 200}
    assert len(completed) == 1
    assert ParticipantEvent.objects.count() == 40
    assert (
        StepInstance.objects.filter(
            step_key="eligibility_review", state=StepState.COMPLETED
        ).count()
        == 20
    )
    assert OutboxEvent.objects.filter(event_type="participants.step.completed").count() == 20
    assert IdempotencyRecord.objects.filter(key="batch-key-1").count() == 1
    body = completed.pop()
    assert b'"accepted":40' in body
    # and a later replay returns the stored bytes
    again = PartnerHttp(raw).post(
        "/api/v1/events/batch/", {"events": events}, idempotency_key="batch-key-1"
    )
    assert (again.status_code, again.content) == (200, body)
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_overlapping_event_ids_store_each_once(org, program):
    # given batches without a key that share half their event ids
    _client, raw = make_key(org)
    for i in range(10):
        participant, _ = participant_upsert(organization=org, external_ref=f"O-{i}", actor=SYSTEM)
        enrollment_open(participant=participant, program=program, actor=SYSTEM)

    def batch(offset):
        return [
            {
                "id": f"ov-{offset + i}",
                "type": "device.synced",
                "external_ref": f"O-{(offset + i) % 10}",
                "occurred_at": "2026-01-05T10:00:00Z",
            }
            for i in range(20)
        ]

    barrier = threading.Barrier(8)
    statuses = []

    def call(n):
        barrier.wait()
        try:
            response = PartnerHttp(raw).post("/api/v1/events/batch/", {"events": batch(n * 10)})
            statuses.append(
                (response.status_code, [r["status"] for r in response.json()["results"]])
            )
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every item was accepted once stored, and each id is stored once
    assert all(code == 200 and set(items) == {202} for code, items in statuses), statuses
    assert ParticipantEvent.objects.count() == len({f"ov-{i}" for i in range(90)})
