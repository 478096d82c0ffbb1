"""The partner event ingest path stays cheap (constant queries per request) and
the set-based batch ingest gives exactly the outcome of one-by-one ingest."""

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import OutboxEvent
from integrations.tests.api_fixtures import PartnerHttp, make_key
from participants.api.serializers import EventOutputSerializer, event_output
from participants.models import Enrollment, ParticipantEvent, StepInstance
from participants.services import enrollment_open, enrollment_transition, participant_upsert
from participants.services.events import EventItem, event_ingest, events_ingest_many
from participants.tests.conftest import SYSTEM, load_program
from programs.actors import Actor
from programs.models import OpsException

pytestmark = pytest.mark.django_db

API = Actor(kind=Actor.API_CLIENT, id="1", label="api:device-vendor")


def body(event_id, type_="device.synced", ref="EHR-1"):
    return {
        "id": event_id,
        "type": type_,
        "external_ref": ref,
        "occurred_at": "2026-01-05T10:00:00Z",
        "data": {"source": "scale", "weight_kg": 81.4},
    }


@pytest.fixture
def partner_with_enrollment(org, program):
    _client, raw = make_key(org)
    http = PartnerHttp(raw)
    response = http.post("/api/v1/referrals/", {"program": "dpp", "external_ref": "EHR-1"})
    assert response.status_code == 201
    http.post("/api/v1/events/", body("warm-up"))  # last_event_at set once
    return http


@pytest.mark.parametrize(
    ("event_type", "disposition", "most"),
    [
        # 6 statements: auth 1, claim 1, then in one transaction: enrollments
        # (locked, with participant, program, version) 1, steps 1, event 1,
        # stored response 1; plus 8 savepoint commands (the test runs inside
        # a transaction, so the claim takes a savepoint too)
        ("device.synced", "deferred", 14),
        # + step update, audit, sequence, outbox, stage check; after commit
        # the webhook dispatch hook (integrations.dispatch) reads the row
        ("eligibility.screened", "matched", 24),
    ],
)
def test_single_event_query_count_is_bounded(
    partner_with_enrollment, django_assert_max_num_queries, event_type, disposition, most
):
    # when
    with django_assert_max_num_queries(most):
        response = partner_with_enrollment.post(
            "/api/v1/events/", body("e-1", event_type), idempotency_key="k-1"
        )
    # then
    assert response.status_code == 202
    assert response.json()["disposition"] == disposition


def test_batch_query_count_does_not_grow_with_the_batch(
    org, program, partner_with_enrollment, django_assert_max_num_queries
):
    # given 200 deferred events for 50 enrolled references
    for i in range(2, 50):
        participant, _ = participant_upsert(organization=org, external_ref=f"EHR-{i}", actor=SYSTEM)
        enrollment_open(participant=participant, program=program, actor=SYSTEM)
    events = [body(f"b-{i}", "device.synced", f"EHR-{i % 50 or 1}") for i in range(200)]
    # when
    with django_assert_max_num_queries(12):
        response = partner_with_enrollment.post("/api/v1/events/batch/", {"events": events})
    # then
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202] * 200
    assert results[1]["event"]["disposition"] == "deferred"  # EHR-1 is enrolled
    assert ParticipantEvent.objects.filter(event_id__startswith="b-").count() == 200


def test_batch_with_unknown_references_raises_one_item_per_reference_and_type(
    partner_with_enrollment,
):
    # given
    events = [body(f"u-{i}", "device.synced", f"NOPE-{i % 3}") for i in range(9)]
    # when
    response = partner_with_enrollment.post("/api/v1/events/batch/", {"events": events})
    # then
    assert {r["event"]["disposition"] for r in response.json()["results"]} == {
        "unknown_participant"
    }
    items = OpsException.objects.filter(kind="unmatched_event")
    assert items.count() == 3
    assert OutboxEvent.objects.filter(event_type="participants.event.unmatched").count() == 9


def test_fast_event_output_equals_the_serializer(org, program):
    # given
    participant, _ = participant_upsert(organization=org, external_ref="R-1", actor=SYSTEM)
    enrollment_open(participant=participant, program=program, actor=SYSTEM)
    result = event_ingest(
        organization=org,
        event_id="x",
        event_type="eligibility.screened",
        external_ref="R-1",
        occurred_at=timezone.now() - timedelta(microseconds=1234),
        data={},
        actor=API,
    )
    # then
    assert event_output(result.event) == dict(EventOutputSerializer(result.event).data)


def _scenario(org, program):
    for ref in ("P-1", "P-2", "P-3"):
        participant, _ = participant_upsert(organization=org, external_ref=ref, actor=SYSTEM)
        enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
        if ref != "P-1":
            for name in ("screen_eligible", "invite", "start_onboarding"):
                enrollment_transition(enrollment_id=enrollment.pk, transition=name, actor=SYSTEM)
    participant_upsert(organization=org, external_ref="P-4", actor=SYSTEM)  # no enrollment
    start = timezone.now() - timedelta(days=1)
    plan = [
        ("e1", "eligibility.screened", "P-1"),  # matched
        ("e2", "eligibility.screened", "P-1"),  # redundant
        ("e3", "device.synced", "P-1"),  # deferred (a later stage)
        ("e1", "device.synced", "P-1"),  # duplicate within the batch
        ("e4", "nothing.expects_this", "P-1"),  # unmatched
        ("e5", "nothing.expects_this", "P-9"),  # unknown participant
        ("e6", "nothing.expects_this", "P-9"),  # same reference and type: one item
        ("e7", "device.synced", "P-4"),  # participant without enrollments: unmatched
        ("e8", "consent.recorded", "P-2"),  # onboarding steps, one by one ...
        ("e9", "device.shipped", "P-2"),
        ("e10", "device.synced", "P-2"),
        ("e11", "coaching.intro_completed", "P-2"),
        ("e12", "device.synced", "P-3"),
        ("e13", "device.synced", "P-3"),  # redundant after e12
    ]
    return [
        EventItem(eid, etype, ref, start + timedelta(minutes=n), {"n": n})
        for n, (eid, etype, ref) in enumerate(plan)
    ]


def _outcome(org, results):
    return {
        "results": [
            (r.event.event_id, r.event.disposition, r.created, r.exception is not None)
            for r in results
        ],
        "events": sorted(
            ParticipantEvent.objects.filter(organization=org).values_list(
                "event_id", "event_type", "disposition", "matched", "participant__external_ref"
            )
        ),
        "steps": sorted(
            StepInstance.objects.filter(enrollment__organization=org).values_list(
                "enrollment__participant__external_ref",
                "step_key",
                "state",
                "completed_by_event__event_id",
            )
        ),
        "enrollments": sorted(
            Enrollment.objects.filter(organization=org).values_list(
                "participant__external_ref", "state", "last_event_at", "event_sequence"
            )
        ),
        "exceptions": sorted(
            OpsException.objects.filter(organization=org).values_list("dedup_key", "occurrences")
        ),
        "outbox": sorted(
            OutboxEvent.objects.filter(organization=org).values_list("event_type", flat=True)
        ),
    }


def test_batch_ingest_equals_one_by_one_ingest(org, other_org, program, dpp_document):
    # given the same enrollments and events in two organizations
    other_program = load_program(other_org, copy.deepcopy(dpp_document))
    items = _scenario(org, program)
    _scenario(other_org, other_program)
    # when one ingests them one by one and the other in one batch
    one_by_one = []
    for item in items:
        one_by_one.append(
            event_ingest(
                organization=org,
                event_id=item.event_id,
                event_type=item.event_type,
                external_ref=item.external_ref,
                occurred_at=item.occurred_at,
                data=item.data,
                actor=API,
            )
        )
    batch = events_ingest_many(organization=other_org, items=items, actor=API)
    # then everything a user can see is the same
    assert _outcome(other_org, batch) == _outcome(org, one_by_one)
    dispositions = [r.event.disposition for r in batch]
    assert dispositions[:3] == ["matched", "redundant", "deferred"]
    assert batch[3].created is False and batch[3].event.event_type == "eligibility.screened"


def test_batch_item_with_invalid_values_is_rejected_alone(org, program):
    # given
    good = EventItem("g", "device.synced", "P", timezone.now(), {})
    bad = EventItem("", "device.synced", "P", timezone.now(), {})
    # when
    results = events_ingest_many(organization=org, items=[good, bad], actor=API)
    # then
    assert results[0].created and isinstance(results[1], ValueError)
    assert list(ParticipantEvent.objects.values_list("event_id", flat=True)) == ["g"]
