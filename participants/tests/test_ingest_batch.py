"""The set-based batch ingest writes what one-by-one ingest writes (audit and
outbox rows included), in a constant number of statements; scoped keys only
touch their programs' enrollments."""

import copy
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.models import OutboxEvent
from integrations.tests.api_fixtures import PartnerHttp, make_key
from participants.models import Enrollment, ParticipantEvent, StepInstance, StepState
from participants.services import enrollment_open, event_ingest, participant_upsert
from participants.services.events import EventItem, events_ingest_many
from participants.tests.conftest import SYSTEM, load_program
from participants.tests.test_ingest_fast_path import API, _scenario
from programs.actors import Actor
from programs.models import AuditEvent

pytestmark = pytest.mark.django_db


def _rows(org):
    """Audit and outbox rows, with database ids replaced by stable names."""
    steps = {
        s.pk: (s.enrollment.participant.external_ref, s.step_key)
        for s in StepInstance.objects.filter(enrollment__organization=org).select_related(
            "enrollment__participant"
        )
    }
    refs = {
        e.pk: e.participant.external_ref
        for e in Enrollment.objects.filter(organization=org).select_related("participant")
    }
    audits = []
    for a in AuditEvent.objects.filter(organization_id=org.pk, action__startswith="step."):
        metadata = {**a.metadata, "enrollment_id": refs.get(a.metadata.get("enrollment_id"))}
        audits.append(
            (a.action, steps[int(a.object_id)], a.from_state, a.to_state, sorted(metadata.items()))
        )
    outbox = []
    for o in OutboxEvent.objects.filter(organization_id=org.pk).order_by("id"):
        payload = {k: v for k, v in o.payload.items() if k not in ("enrollment_id", "step_id")}
        payload.pop("exception_id", None)
        payload.pop("program_version", None)
        # a completed step carries the event's time; other rows the time of ingest
        at = o.occurred_at if o.event_type == "participants.step.completed" else None
        outbox.append((o.event_type, o.sequence, at, sorted(payload)))
    by_key = {}
    for o in OutboxEvent.objects.filter(
        organization_id=org.pk, sequence_key__startswith="enrollment:"
    ):
        ref = refs[int(o.sequence_key.removeprefix("enrollment:"))]
        by_key.setdefault(ref, []).append(o.sequence)
    return sorted(audits), sorted(outbox, key=repr), {k: sorted(v) for k, v in by_key.items()}


def test_batch_writes_the_audit_and_outbox_rows_of_one_by_one_ingest(
    org, other_org, program, dpp_document
):
    # given the same enrollments and events in two organizations
    other_program = load_program(other_org, copy.deepcopy(dpp_document))
    items = _scenario(org, program)
    _scenario(other_org, other_program)
    # when one ingests them one by one and the other in one batch
    for item in items:
        event_ingest(
            organization=org,
            event_id=item.event_id,
            event_type=item.event_type,
            external_ref=item.external_ref,
            occurred_at=item.occurred_at,
            data=item.data,
            actor=API,
        )
    events_ingest_many(organization=other_org, items=items, actor=API)
    # then the audit trail and the outbox (types, sequences, payload keys) match
    assert _rows(other_org) == _rows(org)
    assert AuditEvent.objects.filter(organization_id=other_org.pk, action="step.completed").count()


def _participants(org, program, n):
    refs = []
    for i in range(n):
        participant, _ = participant_upsert(organization=org, external_ref=f"B-{i}", actor=SYSTEM)
        enrollment_open(participant=participant, program=program, actor=SYSTEM)
        refs.append(participant.external_ref)
    return refs


def _batch(refs, prefix, event_type="eligibility.screened"):
    now = timezone.now() - timedelta(hours=1)
    return [
        EventItem(f"{prefix}-{i}", event_type, ref, now + timedelta(seconds=i), {"n": i})
        for i, ref in enumerate(refs)
    ]


def test_batch_statements_do_not_grow_with_the_batch(org, program):
    # given two sets of participants, each with an open eligibility step
    small, large = _participants(org, program, 3)[:3], None
    large = [f"B-{i}" for i in range(3, 40)]
    for ref in large:
        participant, _ = participant_upsert(organization=org, external_ref=ref, actor=SYSTEM)
        enrollment_open(participant=participant, program=program, actor=SYSTEM)
    # when each batch completes one step per participant
    with CaptureQueriesContext(connection) as few:
        first = events_ingest_many(organization=org, items=_batch(small, "s"), actor=API)
    with CaptureQueriesContext(connection) as many:
        second = events_ingest_many(organization=org, items=_batch(large, "l"), actor=API)
    # then the statement count is the same, and every step is completed
    assert len(many) == len(few) <= 13
    assert all(r.event.disposition == "matched" for r in first + second)
    completed = StepInstance.objects.filter(
        step_key="eligibility_review", state=StepState.COMPLETED
    )
    assert completed.count() == 40
    assert OutboxEvent.objects.filter(event_type="participants.step.completed").count() == 40
    sequences = set(
        Enrollment.objects.filter(participant__external_ref__in=large).values_list(
            "event_sequence", flat=True
        )
    )
    assert len(sequences) == 1  # each enrollment moved by the same one step event


def test_single_event_takes_few_statements(org, program):
    # given
    http = PartnerHttp(make_key(org)[1])
    _participants(org, program, 1)
    body = {
        "id": "one",
        "type": "device.synced",  # a later stage: deferred
        "external_ref": "B-0",
        "occurred_at": "2026-01-05T10:00:00Z",
        "data": {"weight_kg": 81.4},
    }
    # when
    with CaptureQueriesContext(connection) as queries:
        response = http.post("/api/v1/events/", body, idempotency_key="k-1")
    # then: key, claim, enrollments (locked), their steps (read after the lock:
    # tests/transaction_tests/test_ingest_concurrent_changes.py), event, last
    # event time, stored response (+ BEGIN/COMMIT or savepoints under the test
    # transaction)
    assert response.status_code == 202
    writes_and_reads = [
        q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN"))
    ]
    assert len(writes_and_reads) <= 8, writes_and_reads


# --- program scopes -----------------------------------------------------------------


@pytest.fixture
def two_programs(org, program, dpp_document):
    other = load_program(
        org,
        {**copy.deepcopy(dpp_document), "program": {**dpp_document["program"], "slug": "other"}},
    )
    participant, _ = participant_upsert(organization=org, external_ref="P-S", actor=SYSTEM)
    mine, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    theirs, _ = enrollment_open(participant=participant, program=other, actor=SYSTEM)
    return program, other, mine, theirs


def _eligibility(enrollment):
    return StepInstance.objects.get(enrollment=enrollment, step_key="eligibility_review").state


@pytest.mark.parametrize("path", ["/api/v1/events/", "/api/v1/events/batch/"])
def test_scoped_key_events_touch_only_its_programs(org, two_programs, path):
    # given a key scoped to the first program; the participant is in both
    program, _other, mine, theirs = two_programs
    http = PartnerHttp(make_key(org, programs=[program])[1])
    event = {
        "id": "scoped-1",
        "type": "eligibility.screened",
        "external_ref": "P-S",
        "occurred_at": "2026-01-05T10:00:00Z",
    }
    body = event if path.endswith("/events/") else {"events": [event]}
    # when
    response = http.post(path, body)
    # then only the enrollment of the key's program moved
    assert response.status_code in (200, 202)
    assert _eligibility(mine) == StepState.COMPLETED
    assert _eligibility(theirs) != StepState.COMPLETED
    theirs.refresh_from_db()
    assert theirs.last_event_at is None
    assert ParticipantEvent.objects.get(event_id="scoped-1").disposition == "matched"


def test_unscoped_key_events_touch_every_program(org, two_programs):
    # given
    _program, _other, mine, theirs = two_programs
    http = PartnerHttp(make_key(org)[1])
    # when
    http.post(
        "/api/v1/events/",
        {
            "id": "all-1",
            "type": "eligibility.screened",
            "external_ref": "P-S",
            "occurred_at": "2026-01-05T10:00:00Z",
        },
    )
    # then
    assert _eligibility(mine) == _eligibility(theirs) == StepState.COMPLETED


def test_scoped_key_sees_only_its_programs_exceptions(org, two_programs):
    # given an exception item in each program
    from programs.services import exception_raise

    program, other, _mine, _theirs = two_programs
    for p in (program, other):
        exception_raise(
            organization=org,
            program=p,
            kind="manual",
            title=f"stuck in {p.slug}",
            dedup_key=f"scope-test:{p.slug}",
            actor=Actor.system("t"),
        )
    http = PartnerHttp(make_key(org, programs=[program])[1])
    # when
    listing = http.get("/api/v1/exceptions/").json()["results"]
    # then
    assert [item["title"] for item in listing] == ["stuck in dpp"]
