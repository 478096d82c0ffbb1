"""Daily strain metrics (ProgramMetricsSnapshot) and the dashboard that reads them."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from participants.models import ProgramMetricsSnapshot
from participants.services import (
    enrollment_open,
    enrollment_transition,
    participant_upsert,
    step_complete,
)
from participants.services.metrics import metrics_snapshot_record, weighted_median
from participants.tasks import metrics_snapshot_task
from programs.actors import Actor
from programs.registries import registry
from programs.services import exception_claim, exception_raise, exception_resolve

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")
DAY = date(2026, 3, 10)


def at(hour, minute=0, day=DAY):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def enroll(org, program, ref):
    participant, _ = participant_upsert(organization=org, external_ref=ref, actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    return enrollment


def test_snapshot_counts_a_hand_built_day(org, program, coordinator):
    # given: a day with 3 referrals, one withdrawn by a coordinator, one step
    # completed by an event and one by a coordinator, two queue items (one
    # resolved by a person after 2 hours), plus activity the day before
    with time_machine.travel(at(12, day=DAY - timedelta(days=1)), tick=False):
        earlier = enroll(org, program, "P-0")
        exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title="old",
            dedup_key="old",
            actor=SYSTEM,
        )
    with time_machine.travel(at(9), tick=False) as clock:
        a, b, c = (enroll(org, program, f"P-{i}") for i in (1, 2, 3))
        clock.move_to(at(10))
        step_complete(step_id=a.steps.get().pk, actor=SYSTEM, via="event")
        step_complete(step_id=b.steps.get().pk, actor=coordinator, via="coordinator")
        item, _ = exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title="t",
            dedup_key="t",
            actor=SYSTEM,
        )
        exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title="u",
            dedup_key="u",
            actor=SYSTEM,
        )
        clock.move_to(at(12))
        exception_claim(exception_id=item.pk, actor=coordinator)
        exception_resolve(exception_id=item.pk, actor=coordinator, note="done")
        enrollment_transition(
            enrollment_id=c.pk, transition="withdraw", actor=coordinator, reason="moved away"
        )
        clock.move_to(at(23, 59))
        # when
        snap = metrics_snapshot_record(program=program, day=DAY)
    # then
    assert snap.active_participants == 3  # P-0, P-1, P-2 (P-3 withdrew)
    assert snap.enrollments_opened == 3
    assert snap.steps_automated == 1
    assert snap.steps_manual == 1
    assert snap.automation_rate == 50.0
    assert snap.exceptions_opened == 2
    assert snap.exceptions_resolved == 1
    assert snap.median_resolve_seconds == 2 * 3600
    assert snap.backlog == 2  # "u" and yesterday's "old"
    # a person: step completion, claim, resolve, withdraw (its skipped step is a consequence)
    assert snap.manual_interventions == 4
    assert snap.interventions_7d == 4
    assert snap.strain_index == round(100 * 4 / 3, 2)
    assert snap.transitions == 1  # the withdrawal; openings are not transitions
    assert earlier.pk  # yesterday's enrollment counts as active, not as opened


def test_snapshot_is_idempotent_and_the_daily_job_is_scheduled(org, program):
    # given
    job = registry.schedules["participants.metrics_snapshot"]
    assert job.func == "participants.tasks.metrics_snapshot_task"
    assert job.cron
    with time_machine.travel(at(9), tick=False):
        enroll(org, program, "P-1")
    # when: the job runs twice on the next morning
    with time_machine.travel(at(0, 15, day=DAY + timedelta(days=1)), tick=False):
        first = metrics_snapshot_task()
        second = metrics_snapshot_task()
    # then: one row per day (yesterday final, today provisional), not two
    assert first == second == {"snapshots": 2}
    rows = ProgramMetricsSnapshot.objects.filter(program=program).order_by("day")
    assert [r.day for r in rows] == [DAY, DAY + timedelta(days=1)]
    assert rows[0].enrollments_opened == 1


def test_weighted_median_weights_each_day_by_its_count():
    assert weighted_median([(10, 1), (100, 5), (1000, 1)]) == 100
    assert weighted_median([(10, 3), (100, 1)]) == 10
    assert weighted_median([]) == 0.0


def test_dashboard_reads_history_from_snapshots(
    client, org, program, auditor, django_assert_max_num_queries
):
    # given: two weeks of snapshots and no underlying rows at all
    now = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
    for back in range(1, 15):
        ProgramMetricsSnapshot.objects.create(
            organization=org,
            program=program,
            day=(now - timedelta(days=back)).date(),
            active_participants=200,
            exceptions_opened=back,
            exceptions_resolved=2,
            median_resolve_seconds=3600 * back,
            steps_automated=9,
            steps_manual=1,
            manual_interventions=4,
        )
    client.force_login(auditor)
    # when
    with time_machine.travel(now, tick=False):
        client.get(reverse("participants_console:dashboard", args=[program.pk]))
        with django_assert_max_num_queries(15):
            response = client.get(reverse("participants_console:dashboard", args=[program.pk]))
    # then
    ctx = response.context
    per_day = {row["day"]: row for row in ctx["per_day"]}
    yesterday = (now - timedelta(days=1)).date()
    assert per_day[yesterday]["opened"] == 1
    assert per_day[(now - timedelta(days=13)).date()]["opened"] == 13
    assert per_day[now.date()] == {"day": now.date(), "opened": 0, "resolved": 0}
    assert ctx["resolved_total"] == 2 * 13
    assert ctx["automation_rate"] == 90.0
    # 14 days resolved 2 each; the weighted median day is day 7 back
    assert ctx["median"] == timedelta(hours=7)
    # the last full week: 7 days x 4 interventions over 200 active
    full_week = ctx["weeks"][-2]
    assert full_week["interventions"] == 28
    assert full_week["per_100"] == 14.0


def test_interventions_count_only_the_programs_own_objects(org, program, dpp_document, coordinator):
    # given a second program of the organization, and people acting on each
    # program's items and on an item of no program (the dashboard of one
    # program counted every action of the organization)
    import copy

    from participants.tests.conftest import load_program

    other_document = copy.deepcopy(dpp_document)
    other_document["program"]["slug"] = "other"
    other = load_program(org, other_document)
    with time_machine.travel(at(9), tick=False) as clock:
        enroll(org, program, "P-1")
        enroll(org, other, "Q-1")
        items = [
            exception_raise(
                organization=org, program=p, kind="manual", title=key, dedup_key=key, actor=SYSTEM
            )[0]
            for p, key in ((program, "ours"), (other, "theirs"), (None, "nobodys"))
        ]
        clock.move_to(at(10))
        for item in items:
            exception_claim(exception_id=item.pk, actor=coordinator)
        exception_resolve(exception_id=items[1].pk, actor=coordinator, note="done")
        clock.move_to(at(23, 59))
        # when
        ours = metrics_snapshot_record(program=program, day=DAY)
        theirs = metrics_snapshot_record(program=other, day=DAY)
    # then
    assert (ours.manual_interventions, ours.interventions_7d) == (1, 1)
    assert (theirs.manual_interventions, theirs.interventions_7d) == (2, 2)
