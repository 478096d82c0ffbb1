"""The SLA sweep: overdue marking, one exception per step, auto-close."""

import copy
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from integrations import outbox as outbox_module
from integrations.models import OutboxEvent
from participants.models import Enrollment, StepState
from participants.services import (
    enrollment_open,
    participant_upsert,
    sla_sweep,
    step_complete,
    step_skip,
)
from participants.services import sweep as sweep_module
from participants.tasks import sla_sweep_task
from participants.tests.conftest import MINI, SYSTEM, drive, load_program, utc
from programs.models import AuditEvent, JobHeartbeat, OpsException
from programs.registries import registry


def test_sweep_marks_overdue_opens_one_item_and_emits(mini_enrollment):
    # given a referred enrollment whose 3-day screening step is past due
    step = mini_enrollment.steps.get()
    later = step.due_at + timedelta(minutes=1)

    # when the sweep runs
    result = sla_sweep(now=later)

    # then the step is overdue, with one open sla_breach item, audit and event
    step.refresh_from_db()
    assert step.state == StepState.OVERDUE
    assert result == {"overdue": 1, "exceptions_opened": 1, "batches": 1}
    item = OpsException.objects.get(kind="sla_breach")
    assert item.state == "open"
    assert item.dedup_key == f"sla_breach:step:{step.pk}"
    assert item.subject_type == "participants.stepinstance"
    assert item.program_id == mini_enrollment.program_id
    assert AuditEvent.objects.filter(action="step.overdue", object_id=str(step.pk)).exists()
    assert AuditEvent.objects.filter(action="exception.opened", object_id=str(item.pk)).exists()
    # the item says when the step was due as a coordinator reads it; the
    # event, as a machine does: ISO 8601 with its offset, on either database
    due = step.due_at.astimezone(UTC)
    assert item.detail == f"Step {step.step_key} was due {due:%Y-%m-%d %H:%M} UTC."
    overdue = OutboxEvent.objects.get(event_type="participants.step.overdue")
    assert overdue.payload["step_id"] == step.pk
    assert datetime.fromisoformat(overdue.payload["due_at"]) == step.due_at
    assert overdue.payload["due_at"].endswith("+00:00")
    assert overdue.sequence_key == f"enrollment:{mini_enrollment.pk}"
    mini_enrollment.refresh_from_db()
    assert overdue.sequence == mini_enrollment.event_sequence
    assert OutboxEvent.objects.filter(
        event_type="programs.exception.opened", payload__exception_id=item.pk
    ).exists()


def test_sweep_leaves_steps_not_yet_due(mini_enrollment):
    step = mini_enrollment.steps.get()
    assert sla_sweep(now=step.due_at - timedelta(seconds=1))["overdue"] == 0
    step.refresh_from_db()
    assert step.state == StepState.PENDING


def test_sweep_is_deduplicated_across_runs(mini_enrollment):
    step = mini_enrollment.steps.get()
    sla_sweep(now=step.due_at + timedelta(minutes=1))
    second = sla_sweep(now=step.due_at + timedelta(minutes=2))
    assert second["overdue"] == 0
    assert OpsException.objects.filter(kind="sla_breach").count() == 1


def test_existing_active_item_is_not_duplicated(mini_enrollment):
    # given an active sla_breach item for the step already (e.g. raised by hand)
    from programs.services import exception_raise

    step = mini_enrollment.steps.get()
    exception_raise(
        organization=mini_enrollment.organization,
        kind="sla_breach",
        title="raised by hand",
        dedup_key=f"sla_breach:step:{step.pk}",
        actor=SYSTEM,
    )

    # when the sweep marks the step
    result = sla_sweep(now=step.due_at + timedelta(minutes=1))

    # then the step is overdue but there is still one active item
    assert result["overdue"] == 1 and result["exceptions_opened"] == 0
    assert OpsException.objects.filter(kind="sla_breach", state="open").count() == 1
    # and the step's event names no item (none was opened by the sweep)
    overdue = OutboxEvent.objects.get(event_type="participants.step.overdue")
    assert overdue.payload["step_id"] == step.pk and overdue.payload["exception_id"] is None
    assert not AuditEvent.objects.filter(
        action="exception.opened", actor_id="participants.sla_sweep"
    ).exists()


def test_late_completion_closes_the_item_audited(mini_enrollment, coordinator):
    step = mini_enrollment.steps.get()
    sla_sweep(now=step.due_at + timedelta(minutes=1))

    # when the overdue step is completed late
    step_complete(step_id=step.pk, actor=coordinator)

    # then its item is resolved automatically, and the audit says so
    item = OpsException.objects.get(kind="sla_breach")
    assert item.state == "resolved" and item.auto_resolved
    assert AuditEvent.objects.filter(
        action="exception.auto_resolved", object_id=str(item.pk)
    ).exists()
    assert OutboxEvent.objects.filter(
        event_type="participants.step.completed", payload__late=True
    ).exists()


def test_late_skip_closes_the_item_too(mini_enrollment, coordinator):
    step = mini_enrollment.steps.get()
    sla_sweep(now=step.due_at + timedelta(minutes=1))
    step_skip(step_id=step.pk, actor=coordinator, reason="screened by phone")
    assert OpsException.objects.get(kind="sla_breach").state == "resolved"


def test_sweep_in_small_batches_handles_many_steps(org, mini_program):
    from participants.services import enrollment_open, participant_upsert

    # given 7 enrollments with a due screening step each
    for i in range(7):
        p, _ = participant_upsert(organization=org, external_ref=f"r{i}", actor=SYSTEM)
        enrollment_open(participant=p, program=mini_program, actor=SYSTEM)

    # when swept in batches of 3
    result = sla_sweep(now=timezone.now() + timedelta(days=4), batch_size=3)

    # then all are overdue with one item each
    assert result == {"overdue": 7, "exceptions_opened": 7, "batches": 3}
    assert OpsException.objects.filter(kind="sla_breach").count() == 7


def test_paused_enrollment_steps_do_not_go_overdue(mini_enrollment):
    enrollment = drive(mini_enrollment, "paused")
    assert sla_sweep(now=timezone.now() + timedelta(days=30))["overdue"] == 0
    assert not enrollment.steps.filter(state=StepState.OVERDUE).exists()


def test_scheduled_task_with_time_travel_across_dst(participant, program):
    from participants.services import enrollment_open

    # given an enrollment opened Saturday 10:00 New York, before spring forward
    with time_machine.travel(utc(2024, 3, 9, 15), tick=False):
        enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    step = enrollment.steps.get(step_key="eligibility_review")

    # when the minute job runs at Tuesday 09:59 EDT, the step is not yet due
    with time_machine.travel(utc(2024, 3, 12, 13, 59), tick=False):
        assert sla_sweep_task()["overdue"] == 0
    # at 10:01 EDT it is overdue (a naive UTC+72h would wait until 11:00)
    with time_machine.travel(utc(2024, 3, 12, 14, 1), tick=False):
        assert sla_sweep_task()["overdue"] == 1
    step.refresh_from_db()
    assert step.state == StepState.OVERDUE
    assert JobHeartbeat.objects.get(name="participants.sla_sweep").last_ok


def test_sweep_is_registered_every_minute():
    job = registry.schedules["participants.sla_sweep"]
    assert job.func == "participants.tasks.sla_sweep_task" and job.minutes == 1


def _two_step_program(org):
    # MINI with a second due step in the screening stage (one enrollment, two steps per batch)
    document = copy.deepcopy(MINI)
    document["stages"][0]["steps"].append(
        {"key": "intake", "title": "Intake", "kind": "manual", "due_after": "P2D"}
    )
    return load_program(org, document)


def _sequences(enrollment):
    return list(
        OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}")
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )


@pytest.mark.parametrize("batch_size", [1, 2000])
def test_sweep_numbers_each_enrollments_events_without_gaps(org, batch_size):
    # given one enrollment with two due steps (its referral already took sequence 1)
    program = _two_step_program(org)
    participant, _ = participant_upsert(organization=org, external_ref="two", actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    before = _sequences(enrollment)

    # when the sweep marks both, in one batch or one per batch
    result = sla_sweep(now=timezone.now() + timedelta(days=4), batch_size=batch_size)

    # then both events continue the enrollment's numbering, gapless, in write order
    assert result["overdue"] == 2 and result["exceptions_opened"] == 2
    enrollment.refresh_from_db()
    assert _sequences(enrollment) == list(range(1, enrollment.event_sequence + 1))
    assert enrollment.event_sequence == len(before) + 2
    overdue = OutboxEvent.objects.filter(event_type="participants.step.overdue").order_by("id")
    assert {e.payload["step_id"] for e in overdue} == set(
        enrollment.steps.values_list("pk", flat=True)
    )
    assert [e.sequence for e in overdue] == [len(before) + 1, len(before) + 2]


def test_sweep_hands_its_outbox_rows_to_the_after_commit_hooks(
    mini_enrollment, monkeypatch, django_capture_on_commit_callbacks
):
    # given a dispatcher hook listening for committed outbox rows
    received = []
    monkeypatch.setattr(outbox_module, "_after_commit_hooks", [received.extend])
    step = mini_enrollment.steps.get()

    # when the sweep commits
    with django_capture_on_commit_callbacks(execute=True):
        sla_sweep(now=step.due_at + timedelta(minutes=1))

    # then the hook got exactly the sweep's two events, after commit
    written = OutboxEvent.objects.filter(
        event_type__in=["participants.step.overdue", "programs.exception.opened"]
    ).values_list("pk", flat=True)
    assert sorted(received) == sorted(written) and len(received) == 2


@pytest.mark.parametrize("path", ["python", "database"])
def test_sweep_announces_only_events_a_webhook_endpoint_wants(
    mini_enrollment, monkeypatch, django_capture_on_commit_callbacks, path
):
    # given the webhook fan-out's interest rule, and one enabled endpoint of
    # the organization subscribed to exception events only
    from integrations.delivery_setup import webhook_interest
    from integrations.models import WebhookEndpoint

    if path == "database" and connection.vendor != "postgresql":
        pytest.skip("the in-database path needs PostgreSQL")
    received = []
    monkeypatch.setattr(outbox_module, "_after_commit_hooks", [])
    monkeypatch.setattr(outbox_module, "_hook_interests", {})
    outbox_module.register_after_commit_hook(received.extend, interest=webhook_interest)
    WebhookEndpoint.objects.create(
        organization=mini_enrollment.organization,
        partner_name="Partner",
        url="https://partner.example/hook",
        event_types=["programs.exception.*"],
        secret="s",
    )
    step = mini_enrollment.steps.get()
    now = step.due_at + timedelta(minutes=1)
    batch = {"database": sweep_module._sweep_batch_sql, "python": sweep_module._sweep_batch_python}

    # when the sweep commits
    with django_capture_on_commit_callbacks(execute=True):
        sweep_module._run(now, 2000, batch[path])

    # then the exception event is announced for the fan-out, undispatched;
    # the step event, which no endpoint receives, is written dispatched and
    # costs no fan-out
    opened = OutboxEvent.objects.get(event_type="programs.exception.opened")
    overdue = OutboxEvent.objects.get(event_type="participants.step.overdue")
    assert received == [opened.pk]
    assert opened.dispatched_at is None
    assert overdue.dispatched_at is not None


@pytest.mark.postgres
def test_planner_settings_of_a_batch_do_not_outlive_it(mini_enrollment):
    # given the sweep running inside a caller's transaction (the test's)
    step = mini_enrollment.steps.get()

    # when a batch has run
    assert sla_sweep(now=step.due_at + timedelta(minutes=1))["overdue"] == 1

    # then the caller's transaction has its join methods back
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
        )
        assert cursor.fetchone() == ("on", "on")


def _sweep_rows(enrollment):
    """What one sweep wrote for the enrollment's overdue step, ids replaced by names."""
    step = enrollment.steps.get(state=StepState.OVERDUE)
    item = OpsException.objects.get(kind="sla_breach", subject_id=str(step.pk))
    names = {step.pk: "<step>", item.pk: "<item>", enrollment.pk: "<enrollment>"}

    # Only id fields are renamed: the organization and program ids are shared
    # by both enrollments, and counts or priorities may equal some id.
    shared = {"organization_id", "program_id"}

    def named(value, key=""):
        if isinstance(value, dict):
            return {k: v if k in shared else named(v, k) for k, v in value.items()}
        if isinstance(value, bool) or (isinstance(value, int) and not key.endswith("_id")):
            return value
        if isinstance(value, int) and value in names:
            return names[value]
        if isinstance(value, str):
            for pk, name in names.items():
                value = value.replace(f"#{pk})", f"#{name})").replace(f":{pk}", f":{name}")
                value = name if value == str(pk) else value
        return value

    item_fields = ["organization_id", "program_id", "kind", "severity", "priority", "title"]
    item_fields += ["detail", "subject_type", "subject_id", "dedup_key", "occurrences"]
    item_fields += ["first_seen_at", "last_seen_at", "due_by", "state", "context"]
    audit_fields = ["created_at", "organization_id", "actor_kind", "actor_id", "actor_label"]
    audit_fields += ["action", "object_type", "object_id", "from_state", "to_state", "reason"]
    audit_fields += ["request_id", "ip_address", "user_agent", "metadata"]
    outbox_fields = ["organization_id", "event_type", "payload", "sequence_key", "sequence"]
    outbox_fields += ["occurred_at", "created_at", "dispatched_at"]
    audits = AuditEvent.objects.filter(
        actor_id="participants.sla_sweep", object_id__in=[str(step.pk), str(item.pk)]
    ).order_by("id")
    events = OutboxEvent.objects.filter(
        event_type__in=["participants.step.overdue", "programs.exception.opened"]
    ).order_by("id")
    events = [
        e
        for e in events
        if names.get(e.payload.get("step_id")) or e.payload.get("exception_id") == item.pk
    ]
    return {
        "step": {"state": step.state, "overdue_at": step.overdue_at},
        "item": named({f: getattr(item, f) for f in item_fields}),
        "audit": [named({f: getattr(a, f) for f in audit_fields}) for a in audits],
        "outbox": [named({f: getattr(e, f) for f in outbox_fields}) for e in events],
    }


@pytest.mark.postgres
def test_database_path_writes_exactly_what_the_python_path_writes(org, mini_program):
    # given two enrollments with the same history, in the active stage (a
    # high-severity step, earlier events numbered), opened at the same instant
    opened_at = utc(2024, 3, 9, 15, 0, 0, 250_000)
    sweep_at = opened_at + timedelta(hours=6)

    def active_enrollment(ref):
        with time_machine.travel(opened_at, tick=False):
            participant, _ = participant_upsert(organization=org, external_ref=ref, actor=SYSTEM)
            enrollment, _ = enrollment_open(
                participant=participant, program=mini_program, actor=SYSTEM
            )
            return drive(enrollment, "active")

    first = active_enrollment("first")
    # when the first is swept by the Python path (SQLite's), the second in the database
    with time_machine.travel(sweep_at, tick=False):
        python = sweep_module._run(sweep_at, 2000, sweep_module._sweep_batch_python)
    second = active_enrollment("second")
    with time_machine.travel(sweep_at, tick=False):
        database = sweep_module._run(sweep_at, 2000, sweep_module._sweep_batch_sql)

    # then both report and write the same rows, field by field
    assert python == database == {"overdue": 1, "exceptions_opened": 1, "batches": 1}
    rows = _sweep_rows(first)
    assert rows["item"]["severity"] == "high" and rows["outbox"][0]["sequence"] > 1
    assert [a["action"] for a in rows["audit"]] == ["step.overdue", "exception.opened"]
    assert [e["event_type"] for e in rows["outbox"]] == [
        "participants.step.overdue",
        "programs.exception.opened",
    ]
    assert _sweep_rows(second) == rows


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sweep_waits_for_a_transaction_holding_the_enrollment(mini_enrollment, coordinator):
    # given a coordinator's transaction that completes the due step and has not committed
    step = mini_enrollment.steps.get()
    holding, release, errors = threading.Event(), threading.Event(), []

    def coordinator_completes():
        from django.db import transaction

        try:
            with transaction.atomic():
                step_complete(step_id=step.pk, actor=coordinator)
                holding.set()
                release.wait(timeout=30)
        except Exception as exc:  # a failure of the test, reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    result = {}

    def sweeper():
        try:
            result.update(sla_sweep(now=step.due_at + timedelta(minutes=1)))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    completer = threading.Thread(target=coordinator_completes)
    completer.start()
    assert holding.wait(timeout=30)

    # when the sweep runs meanwhile (it queues on the enrollment row lock) and then
    # the coordinator commits
    sweep = threading.Thread(target=sweeper)
    sweep.start()
    deadline = time.monotonic() + 30
    while not _someone_waits_for_a_lock() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _someone_waits_for_a_lock()
    release.set()
    completer.join(timeout=30)
    sweep.join(timeout=30)

    # then the sweep saw the completion: nothing marked, no item, numbering intact
    assert errors == []
    assert result["overdue"] == 0 and result["exceptions_opened"] == 0
    step.refresh_from_db()
    assert step.state == StepState.COMPLETED
    assert not OpsException.objects.filter(kind="sla_breach").exists()
    enrollment = Enrollment.objects.get(pk=mini_enrollment.pk)
    assert _sequences(enrollment) == list(range(1, enrollment.event_sequence + 1))


def _someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0
