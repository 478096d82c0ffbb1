"""R7: threads race conflicting transitions on one enrollment (real row locks).

One winner; the others fail cleanly (TransitionNotAllowed or ConcurrentUpdate,
which the API maps to 409); the transition log count equals state changes.
"""

import copy
import threading

import pytest
from django.db import connection

from integrations.models import OutboxEvent
from participants.models import Enrollment
from participants.services import enrollment_open, enrollment_transition, participant_upsert
from participants.tests.conftest import MINI, SYSTEM, drive, finish_stage, load_program
from programs.errors import ConcurrentUpdate, TransitionNotAllowed
from programs.models import AuditEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _active_enrollment(org):
    program = load_program(org, copy.deepcopy(MINI))
    participant, _ = participant_upsert(organization=org, external_ref="race", actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    enrollment = drive(enrollment, "active")
    finish_stage(enrollment)
    return enrollment


def _race(enrollment_id, transitions):
    barrier = threading.Barrier(len(transitions))
    outcomes = [None] * len(transitions)

    def run(i, name):
        try:
            barrier.wait(timeout=30)
            enrollment_transition(
                enrollment_id=enrollment_id, transition=name, actor=SYSTEM, reason=f"thread {i}"
            )
            outcomes[i] = ("won", name)
        except (TransitionNotAllowed, ConcurrentUpdate) as exc:
            outcomes[i] = ("lost", type(exc).__name__)
        except Exception as exc:  # anything else is a failure of the test
            outcomes[i] = ("error", repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(transitions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def _transition_log(enrollment_id):
    return list(
        AuditEvent.objects.filter(
            object_type="participants.enrollment", object_id=str(enrollment_id)
        )
        .exclude(action="enrollment.opened")
        .order_by("created_at", "id")
        .values_list("from_state", "to_state")
    )


@pytest.mark.parametrize("threads", [2, 8, 32])
def test_conflicting_transitions_have_one_winner(org, threads):
    # given an active enrollment whose stage is done: pause and complete are both
    # legal, and each one rules the other out (withdraw would not: paused may withdraw)
    enrollment = _active_enrollment(org)
    log_before = _transition_log(enrollment.pk)
    names = [("pause", "complete")[i % 2] for i in range(threads)]

    # when the threads race
    outcomes = _race(enrollment.pk, names)

    # then exactly one won and the rest failed cleanly
    assert not [o for o in outcomes if o[0] == "error"], outcomes
    winners = [o for o in outcomes if o[0] == "won"]
    assert len(winners) == 1, outcomes
    enrollment.refresh_from_db()
    expected_state = {"pause": "paused", "complete": "completed"}
    assert enrollment.state == expected_state[winners[0][1]]

    # and the transition log grew by exactly the one state change
    log_after = _transition_log(enrollment.pk)
    assert len(log_after) == len(log_before) + 1
    assert log_after[-1] == ("active", enrollment.state)
    changes = sum(1 for a, b in log_after if a != b)
    assert changes == len(log_after)

    # and the outbox has no lost update: one transition event, sequences gapless
    sequences = list(
        OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}")
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, len(sequences) + 1))
    assert Enrollment.objects.get(pk=enrollment.pk).event_sequence == len(sequences)


@pytest.mark.parametrize("threads", [2, 16])
def test_same_transition_raced_runs_once(org, threads):
    enrollment = _active_enrollment(org)
    outcomes = _race(enrollment.pk, ["pause"] * threads)
    assert [o[0] for o in outcomes].count("won") == 1, outcomes
    assert (
        AuditEvent.objects.filter(action="enrollment.pause", object_id=str(enrollment.pk)).count()
        == 1
    )


def test_concurrent_duplicate_events_have_one_side_effect(org):
    from django.utils import timezone

    from participants.services import event_ingest

    program = load_program(org, copy.deepcopy(MINI))
    participant, _ = participant_upsert(organization=org, external_ref="dup", actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    barrier = threading.Barrier(8)
    results = []
    occurred = timezone.now()

    def run():
        try:
            barrier.wait(timeout=30)
            r = event_ingest(
                organization=org.pk,
                event_id="same-id",
                event_type="eligibility.screened",
                external_ref="dup",
                occurred_at=occurred,
                data={},
                actor=SYSTEM,
            )
            results.append(r.created)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [False] * 7 + [True]
    assert (
        AuditEvent.objects.filter(
            action="step.completed", metadata__enrollment_id=enrollment.pk
        ).count()
        == 1
    )
