"""Run a synthetic program through the real system on a virtual clock.

Only the clock and the outside world are simulated:
- the clock is virtual (`time_machine`, moved forward in 15-minute ticks and
  to each scheduled action's time, so every row gets a realistic timestamp);
- partners act through the same services their API calls reach: the EHR
  refers (`participant_upsert`, `enrollment_open`), screens
  (`eligibility.screened` + `screen_eligible`/`screen_ineligible`) and
  invites; participants accept (`start_onboarding`); the device vendor, the
  coaching tool and the participants' apps send events (`event_ingest`) with
  realistic delays, late arrivals, duplicates and drop-outs;
- Baton's webhooks go to `PartnerFake` (a real local HTTP server) through
  the real outbox, dispatcher and retry code; messages go through the real
  `webhook` channel connector to the same fake, standing in for the
  customer's messaging tool;
- coordinators work the queue during office hours in the program's timezone
  through the exception services (claim next, nudge by snoozing, withdraw a
  drop-out, complete a step they confirmed, replay, switch channel, dismiss);
- the periodic jobs run for real, in-process, from their registered dotted
  paths (`programs.registries.registry.schedules`): SLA sweep, message
  dispatch, webhook dispatch, snooze wake-up, and the metrics snapshot at
  every virtual midnight.

Task queue: the after-commit hooks enqueue "drain now" tasks with
`django_q.tasks.async_task`. During a run that function is swapped for a
collector, and the collected tasks (deduplicated by function) run in-process
at the end of each tick, as a worker would pick them up. Nothing piles up in
the broker and the run stays deterministic.
"""

from __future__ import annotations

import heapq
import random
import resource
import sys
import time as real_time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import import_module
from zoneinfo import ZoneInfo

import time_machine
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.test.utils import override_settings

from participants.models import (
    Enrollment,
    EnrollmentState,
    ParticipantEvent,
    ProgramMetricsSnapshot,
    StepInstance,
)
from participants.services import (
    enrollment_open,
    enrollment_transition,
    event_ingest,
    participant_upsert,
    step_complete,
)
from participants.services.metrics import metrics_snapshot_record, weighted_median
from participants.simulation.faults import Faults
from participants.simulation.partner_fake import PartnerFake
from programs.actors import Actor
from programs.errors import BatonError
from programs.models import (
    ACTIVE_EXCEPTION_STATES,
    ExceptionState,
    Membership,
    OpsException,
)
from programs.registries import registry
from programs.services import (
    exception_claim_next,
    exception_dismiss,
    exception_resolve,
    exception_retry,
    exception_snooze,
    membership_grant,
)

TICK = timedelta(hours=1)
OFFICE_HOURS = range(9, 17)  # local hours a coordinator works, Monday to Friday
ITEMS_PER_COORDINATOR_HOUR = 10
PARTICIPANTS_PER_COORDINATOR = 150
REFERRAL_SHARE = 0.6  # referrals arrive over the first 60% of the period
INELIGIBLE = 0.10
LATE_SCREENING = 0.08  # the referral desk screens after the 3-day SLA
NEVER_ACCEPTS = 0.08
SLOW_RESPONDER = 0.12  # onboarding events of these come past their due dates
# The jobs a worker's schedule runs every minute; here once per virtual hour.
# They also do what the "drain now" tasks enqueued after commit would do.
PERIODIC_JOBS = (
    "participants.sla_sweep",
    "messaging.dispatch_due_messages",
    "integrations.webhooks_dispatch",
    "programs.wake_snoozed_exceptions",
)
SUBSUMED_TASKS = {"integrations.tasks.webhooks_drain", "messaging.tasks.dispatch_due_messages"}
SIM_EVENT_TYPES = ["participants.enrollment.*"]
SIM_RETRY_SCHEDULE = [0, 60, 300, 1800, 7200]
ONBOARDING_EVENTS = (
    # (event type, min delay h, max delay h, due after h) from onboarding start
    ("consent.recorded", 1, 60, 7 * 24),
    ("device.shipped", 12, 96, 5 * 24),
    ("device.synced", 12, 120, 14 * 24),
    ("coaching.intro_completed", 12, 120, 10 * 24),
)
ROW_MODELS = (
    "participants.Participant",
    "participants.Enrollment",
    "participants.StepInstance",
    "participants.ParticipantEvent",
    "participants.ProgramMetricsSnapshot",
    "programs.AuditEvent",
    "programs.OpsException",
    "integrations.OutboxEvent",
    "integrations.Delivery",
    "integrations.Attempt",
    "messaging.Message",
    "messaging.DeliveryAttempt",
)


@dataclass
class SimConfig:
    program: object
    participants: int
    days: int
    seed: int = 1
    faults: Faults = field(default_factory=Faults)
    speed: float = 0.0  # virtual hours per real second; 0 = as fast as possible
    start: datetime | None = None  # default: `days` before now, on the hour
    progress: bool = True
    ref_prefix: str = "sim"
    coordinators: int | None = None  # default: one per 150 participants


@dataclass
class SimParticipant:
    index: int
    ref: str
    dropout: bool
    enrollment_id: int | None = None


@dataclass
class SimResult:
    summary: dict
    series: dict
    config: dict


class _QueueCollector:
    """Stands in for `django_q.tasks.async_task` during a run."""

    def __init__(self):
        self.pending: dict[str, None] = {}
        self.enqueued = 0

    def __call__(self, func, *args, **kwargs):
        name = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
        self.pending[name] = None
        self.enqueued += 1
        return f"sim-{self.enqueued}"

    def run(self) -> int:
        ran = 0
        while self.pending:
            names = list(self.pending)
            self.pending.clear()
            for name in names:
                _call(name)
                ran += 1
        return ran


def _call(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return getattr(import_module(module), attr)()


@contextmanager
def _collect_queue():
    import django_q.tasks as q_tasks

    collector = _QueueCollector()
    original = q_tasks.async_task
    q_tasks.async_task = collector
    try:
        yield collector
    finally:
        q_tasks.async_task = original


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def row_counts() -> dict[str, int]:
    counts = {}
    for label in ROW_MODELS:
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        counts[label] = model.objects.count()
    return counts


class Simulation:
    def __init__(self, config: SimConfig):
        self.c = config
        self.program = config.program
        self.org = self.program.organization
        self.tz = ZoneInfo(self.program.timezone or "UTC")
        self.rng = random.Random(config.seed)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.start = config.start or now - timedelta(days=config.days)
        self.end = self.start + timedelta(days=config.days)
        self.ref_stem = f"{config.ref_prefix}-{config.seed}-"
        self.heap: list = []
        self.seq = 0
        self.people: dict[str, SimParticipant] = {}
        self.stats = Counter()
        self.nudged: set[int] = set()
        self.backlog_series: list[tuple[str, int]] = []
        self.ehr = Actor(kind=Actor.API_CLIENT, id="sim-ehr", label="api:EHR referral desk (sim)")
        self.devices = Actor(
            kind=Actor.API_CLIENT, id="sim-devices", label="api:Device vendor (sim)"
        )
        self.coaching = Actor(
            kind=Actor.API_CLIENT, id="sim-coach", label="api:Coaching tool (sim)"
        )

    # --- planning --------------------------------------------------------------

    def push(self, at: datetime, action: str, *args):
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, action, args))

    def plan(self):
        window = timedelta(days=self.c.days * REFERRAL_SHARE) or timedelta(hours=12)
        window = max(window, timedelta(hours=12))
        for i in range(self.c.participants):
            ref = f"{self.ref_stem}{i:06d}"
            person = SimParticipant(
                index=i, ref=ref, dropout=self.rng.random() < self.c.faults.dropout
            )
            self.people[ref] = person
            at = self.start + timedelta(seconds=self.rng.uniform(0, window.total_seconds()))
            self.push(at, "refer", ref)

    def hours(self, low, high) -> timedelta:
        return timedelta(hours=self.rng.uniform(low, high))

    def send_event(self, ref: str, event_type: str, occurred_at: datetime, actor_name: str):
        """Plan a partner event: maybe late (delivered after it happened),
        maybe duplicated (the same event id again)."""
        faults = self.c.faults
        deliver_at = occurred_at
        if self.rng.random() < faults.late:
            deliver_at = occurred_at + self.hours(6, 48)
            self.stats["events_late"] += 1
        event_id = f"{ref}:{event_type}"
        self.push(deliver_at, "event", ref, event_type, event_id, occurred_at, actor_name)
        if self.rng.random() < faults.dup:
            self.push(
                deliver_at + self.hours(0.1, 3),
                "event",
                ref,
                event_type,
                event_id,
                occurred_at,
                actor_name,
            )
            self.stats["events_duplicated"] += 1

    # --- partner and participant actions ---------------------------------------

    def act(self, now: datetime, action: str, args):
        try:
            getattr(self, f"do_{action}")(now, *args)
        except (BatonError, ValueError) as exc:
            self.stats[f"refused_{action}"] += 1
            self.stats["refused"] += 1
            if self.stats["refused"] <= 5 and self.c.progress:
                print(f"\nsimulate: {action} {args[0]} refused: {exc}", file=sys.stderr)

    def enrollment(self, ref) -> int | None:
        return self.people[ref].enrollment_id

    def do_refer(self, now, ref):
        participant, _ = participant_upsert(
            organization=self.org, external_ref=ref, actor=self.ehr, source_system="ehr"
        )
        enrollment, _ = enrollment_open(
            participant=participant, program=self.program, actor=self.ehr
        )
        self.people[ref].enrollment_id = enrollment.pk
        self.stats["referred"] += 1
        delay = self.hours(76, 120) if self.rng.random() < LATE_SCREENING else self.hours(2, 40)
        self.push(now + delay, "screen", ref)

    def do_screen(self, now, ref):
        eligible = self.rng.random() >= INELIGIBLE
        event_ingest(
            organization=self.org,
            event_id=f"{ref}:eligibility.screened",
            event_type="eligibility.screened",
            external_ref=ref,
            occurred_at=now,
            data={"eligible": eligible},
            actor=self.ehr,
            source="ehr",
        )
        enrollment_transition(
            enrollment_id=self.enrollment(ref),
            transition="screen_eligible" if eligible else "screen_ineligible",
            actor=self.ehr,
            reason="" if eligible else "screening criteria not met",
        )
        if eligible:
            self.push(now + self.hours(0.2, 6), "invite", ref)

    def do_invite(self, now, ref):
        enrollment_transition(
            enrollment_id=self.enrollment(ref), transition="invite", actor=self.ehr
        )
        if self.rng.random() >= NEVER_ACCEPTS:
            self.push(now + self.hours(1, 72), "accept", ref)

    def do_accept(self, now, ref):
        enrollment_transition(
            enrollment_id=self.enrollment(ref), transition="start_onboarding", actor=self.ehr
        )
        person = self.people[ref]
        slow = self.rng.random() < SLOW_RESPONDER
        stop_after = self.rng.randrange(len(ONBOARDING_EVENTS)) if person.dropout else None
        last = now
        shipped = now
        for n, (event_type, low, high, due) in enumerate(ONBOARDING_EVENTS):
            if stop_after is not None and n >= stop_after:
                break
            delay = self.hours(low, high)
            if slow:
                delay = timedelta(hours=due) + self.hours(6, 72)
            base = shipped if event_type == "device.synced" else now
            at = base + delay
            if event_type == "device.shipped":
                shipped = at
            actor = "devices" if event_type.startswith("device.") else "coaching"
            if event_type == "consent.recorded":
                actor = "ehr"
            self.send_event(ref, event_type, at, actor)
            last = max(last, at)
        if stop_after is None:
            self.send_event(
                ref, "coaching.session_attended", last + self.hours(24, 8 * 24), "coaching"
            )

    def do_event(self, now, ref, event_type, event_id, occurred_at, actor_name):
        actor = {"ehr": self.ehr, "devices": self.devices, "coaching": self.coaching}[actor_name]
        result = event_ingest(
            organization=self.org,
            event_id=event_id,
            event_type=event_type,
            external_ref=ref,
            occurred_at=occurred_at,
            data={},
            actor=actor,
            source=actor_name,
        )
        self.stats["events_received"] += 1
        if not result.created:
            self.stats["events_deduplicated"] += 1

    # --- coordinators ----------------------------------------------------------

    def coordinator_users(self) -> list:
        wanted = self.c.coordinators or max(
            1, -(-self.c.participants // PARTICIPANTS_PER_COORDINATOR)
        )
        users = list(
            get_user_model()
            .objects.filter(
                memberships__organization=self.org,
                memberships__role__in=["coordinator", "lead"],
                is_active=True,
            )
            .order_by("pk")
            .distinct()[:wanted]
        )
        User = get_user_model()
        n = 0
        while len(users) < wanted:
            n += 1
            username = f"sim-coordinator-{self.org.slug}-{n}"
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_unusable_password()
                user.save()
            if not Membership.objects.filter(user=user, organization=self.org).exists():
                membership_grant(
                    user=user,
                    organization=self.org,
                    role="coordinator",
                    actor=Actor.system("simulate"),
                )
            if user not in users:
                users.append(user)
        return users

    def office_hours(self, now) -> bool:
        local = now.astimezone(self.tz)
        return local.weekday() < 5 and local.hour in OFFICE_HOURS

    def work_queue(self, now, users):
        for user in users:
            budget = ITEMS_PER_COORDINATOR_HOUR
            mine = list(
                OpsException.objects.filter(
                    organization=self.org, assignee=user, state__in=["open", "claimed"]
                ).order_by("-priority", "first_seen_at", "pk")[:budget]
            )
            for item in mine:
                self.handle(item, user, now)
                budget -= 1
            while budget > 0:
                item = exception_claim_next(user=user, organization_ids=[self.org.pk])
                if item is None:
                    break
                self.stats["claimed"] += 1
                self.handle(item, user, now)
                budget -= 1

    def handle(self, item, user, now):
        actor = Actor.for_user(user)
        try:
            getattr(self, f"handle_{item.kind}", self.handle_other)(item, actor, now)
        except (BatonError, ValueError) as exc:
            self.stats["coordinator_conflicts"] += 1
            if self.c.progress and self.stats["coordinator_conflicts"] <= 3:
                print(f"\nsimulate: {item.kind} #{item.pk}: {exc}", file=sys.stderr)
        self.stats[f"worked_{item.kind}"] += 1

    def _resolve_if_active(self, item, actor, note):
        item.refresh_from_db(fields=["state"])
        if item.state in ACTIVE_EXCEPTION_STATES:
            exception_resolve(exception_id=item.pk, actor=actor, note=note)

    def _snooze(self, item, actor, now, hours, reason):
        exception_snooze(
            exception_id=item.pk, actor=actor, until=now + timedelta(hours=hours), reason=reason
        )

    def handle_sla_breach(self, item, actor, now):
        step = (
            StepInstance.objects.select_related("enrollment", "enrollment__participant")
            .filter(pk=item.subject_id)
            .first()
        )
        if step is None or not step.is_open or step.enrollment.is_terminal:
            self._resolve_if_active(item, actor, "Already done; nothing left to do.")
            return
        if item.pk not in self.nudged:
            self.nudged.add(item.pk)
            self._snooze(item, actor, now, 24, "Nudged the participant; checking back tomorrow.")
            return
        person = self.people.get(step.enrollment.participant.external_ref)
        if person is not None and person.dropout:
            enrollment_transition(
                enrollment_id=step.enrollment_id,
                transition="withdraw",
                actor=actor,
                reason="Stopped responding after two contact attempts.",
            )
            self.stats["withdrawn_by_coordinator"] += 1
            self._resolve_if_active(item, actor, "Withdrawn: stopped responding.")
            return
        if step.kind in ("manual", "partner_task"):
            step_complete(
                step_id=step.pk, actor=actor, reason="Confirmed by phone with the partner."
            )
            self._resolve_if_active(item, actor, "Confirmed by phone; step completed.")
            return
        self._resolve_if_active(item, actor, "Followed up with the participant; waiting on them.")

    def handle_delivery_dead(self, item, actor, now):
        if self.fake.down:
            self._snooze(item, actor, now, 2, "Partner outage; replay once they are back.")
            return
        exception_retry(exception_id=item.pk, actor=actor)
        self._resolve_if_active(item, actor, "Replayed the dead deliveries.")

    def handle_endpoint_down(self, item, actor, now):
        if self.fake.down:
            self._snooze(item, actor, now, 2, "Partner confirmed an outage; re-check later.")
            return
        exception_retry(exception_id=item.pk, actor=actor)
        self._resolve_if_active(item, actor, "Partner endpoint is back up.")

    def handle_message_failed(self, item, actor, now):
        exception_retry(exception_id=item.pk, actor=actor, label="Switch channel")
        self._resolve_if_active(item, actor, "Switched channel.")

    def handle_unmatched_event(self, item, actor, now):
        exception_dismiss(
            exception_id=item.pk, actor=actor, reason="Late or stray partner event; no action."
        )

    def handle_other(self, item, actor, now):
        self._resolve_if_active(item, actor, "Checked; no action needed.")

    # --- the run -----------------------------------------------------------------

    def setup(self, fake: PartnerFake):
        from integrations.models import WebhookEndpoint
        from integrations.services.webhooks import webhook_endpoint_create, webhook_endpoint_update
        from integrations.signing import generate_secret
        from messaging.models import ChannelConnector

        actor = Actor.system("simulate")
        name = f"Partner (simulated, seed {self.c.seed})"
        existing = WebhookEndpoint.objects.filter(organization=self.org, partner_name=name).first()
        if existing is not None:
            self.endpoint = webhook_endpoint_update(
                endpoint_id=existing.pk, actor=actor, url=fake.url, enabled=True
            )
        else:
            self.endpoint, _ = webhook_endpoint_create(
                organization=self.org,
                partner_name=name,
                url=fake.url,
                actor=actor,
                event_types=SIM_EVENT_TYPES,
                retry_schedule=SIM_RETRY_SCHEDULE,
            )
        self.connector, _ = ChannelConnector.objects.update_or_create(
            organization=self.org,
            slug="sim-messaging-tool",
            defaults={
                "name": "Messaging tool (simulated)",
                "kind": "webhook",
                "url": fake.messages_url,
                "secret": generate_secret(),
                "channels": ["sms", "email", "push", "in_app"],
                "is_default": True,
                "enabled": True,
            },
        )

    def teardown(self):
        """The simulated partner leaves: its endpoint and connector are
        disabled so the live system does not call a server that is gone."""
        from integrations.services.webhooks import webhook_endpoint_update

        webhook_endpoint_update(
            endpoint_id=self.endpoint.pk, actor=Actor.system("simulate"), enabled=False
        )
        self.connector.enabled = False
        self.connector.save(update_fields=["enabled", "updated_at"])

    def run_jobs(self, queue):
        for name in list(queue.pending):
            if name in SUBSUMED_TASKS:
                del queue.pending[name]
        for name in PERIODIC_JOBS:
            job = registry.schedules.get(name)
            if job is not None:
                _call(job.func)
        queue.run()

    def run(self) -> SimResult:
        random.seed(self.c.seed)  # retry jitter in the delivery code
        rows_before = row_counts()
        cpu_before = _cpu_seconds()
        wall_before = real_time.perf_counter()
        self.plan()
        faults = self.c.faults
        with (
            override_settings(BATON_ALLOW_INSECURE_WEBHOOKS=True),
            PartnerFake(
                seed=self.c.seed, slow_share=faults.slow, msgfail_share=faults.msgfail
            ) as fake,
            _collect_queue() as queue,
            time_machine.travel(self.start, tick=False) as traveller,
        ):
            self.fake = fake
            self.setup(fake)
            users = self.coordinator_users()
            now = self.start
            next_day = self.start.replace(hour=0) + timedelta(days=1)
            total_ticks = int((self.end - self.start) / TICK)
            tick = 0
            while now < self.end:
                tick_end = min(now + TICK, self.end)
                fake.down = faults.partner_down(now - self.start)
                while self.heap and self.heap[0][0] < tick_end:
                    at, _, action, args = heapq.heappop(self.heap)
                    at = max(at, now)
                    traveller.move_to(at)
                    self.act(at, action, args)
                now = tick_end
                traveller.move_to(now)
                self.run_jobs(queue)
                if self.office_hours(now - TICK):
                    self.work_queue(now, users)
                    queue.run()
                self.backlog_series.append((now.isoformat(), self.active_items()))
                if now >= next_day:
                    metrics_snapshot_record(
                        program=self.program, day=(next_day - timedelta(days=1)).date()
                    )
                    next_day += timedelta(days=1)
                tick += 1
                self.progress(tick, total_ticks, now)
                if self.c.speed:
                    real_time.sleep(TICK.total_seconds() / 3600 / self.c.speed)
            # Last (partial) day and the report.
            metrics_snapshot_record(
                program=self.program, day=(self.end - timedelta(seconds=1)).date()
            )
            self.teardown()
            fake_received = dict(fake.received)
        cpu = _cpu_seconds() - cpu_before
        wall = real_time.perf_counter() - wall_before
        if self.c.progress:
            print(file=sys.stderr)
        rows_after = row_counts()
        rows = {k: rows_after[k] - rows_before.get(k, 0) for k in rows_after}
        return self.result(cpu=cpu, wall=wall, rows=rows, fake=fake_received, queue=queue)

    def active_items(self) -> int:
        return OpsException.objects.filter(
            organization=self.org, state__in=ACTIVE_EXCEPTION_STATES
        ).count()

    def progress(self, tick, total, now):
        if not self.c.progress:
            return
        width = 30
        done = int(width * tick / max(total, 1))
        day = (now - self.start).days + 1
        sys.stderr.write(
            f"\r[{'#' * done}{'.' * (width - done)}] day {min(day, self.c.days)}/{self.c.days} "
            f"{now.astimezone(self.tz):%a %H:%M}  referred {self.stats['referred']}"
            f"  queue {self.backlog_series[-1][1] if self.backlog_series else 0}   "
        )
        sys.stderr.flush()

    # --- results -----------------------------------------------------------------

    def result(self, *, cpu, wall, rows, fake, queue) -> SimResult:
        program = self.program
        enrollments = dict(
            Enrollment.objects.filter(
                program=program, participant__external_ref__startswith=self.ref_stem
            )
            .values_list("state")
            .annotate(n=Count("pk"))
            .values_list("state", "n")
        )
        items = OpsException.objects.filter(
            organization=self.org, first_seen_at__gte=self.start, first_seen_at__lt=self.end
        )
        by_kind = dict(items.values_list("kind").annotate(n=Count("pk")).values_list("kind", "n"))
        resolved = items.filter(state=ExceptionState.RESOLVED)
        snapshots = list(
            ProgramMetricsSnapshot.objects.filter(
                program=program,
                day__gte=self.start.date(),
                day__lte=(self.end - timedelta(seconds=1)).date(),
            ).order_by("day")
        )
        automated = sum(s.steps_automated for s in snapshots)
        manual_steps = sum(s.steps_manual for s in snapshots)
        interventions = sum(s.manual_interventions for s in snapshots)
        mean_active = (
            sum(s.active_participants for s in snapshots) / len(snapshots) if snapshots else 0
        )
        weeks = self.c.days / 7
        strain = (
            round(100 * interventions / mean_active / weeks, 2) if mean_active and weeks else None
        )
        medians = [
            (s.median_resolve_seconds, s.exceptions_resolved)
            for s in snapshots
            if s.median_resolve_seconds is not None
        ]
        participant_days = self.c.participants * self.c.days
        total_rows = sum(rows.values())
        events = ParticipantEvent.objects.filter(
            organization=self.org, external_ref__startswith=self.ref_stem
        )
        summary = {
            "participants": self.c.participants,
            "days": self.c.days,
            "seed": self.c.seed,
            "enrollments": {s: enrollments.get(s, 0) for s in EnrollmentState.values},
            "exceptions_opened": sum(by_kind.values()),
            "exceptions_by_kind": dict(sorted(by_kind.items())),
            "exceptions_resolved": resolved.count(),
            "exceptions_auto_resolved": resolved.filter(auto_resolved=True).count(),
            "exceptions_active_at_end": self.active_items(),
            "median_time_to_resolve_h": round(weighted_median(medians) / 3600, 1)
            if medians
            else None,
            "step_completions_automated": automated,
            "step_completions_manual": manual_steps,
            "automation_rate": round(100 * automated / (automated + manual_steps), 1)
            if automated + manual_steps
            else None,
            "manual_interventions": interventions,
            "strain_index": strain,
            "partner_events": events.count(),
            "partner_events_delivered": self.stats["events_received"],
            "partner_events_late": self.stats["events_late"],
            "partner_events_duplicates": self.stats["events_deduplicated"],
            "messages": sum(s.messages for s in snapshots),
            "messages_suppressed": sum(s.messages_suppressed for s in snapshots),
            "webhook_attempts": sum(s.deliveries for s in snapshots),
            "webhook_attempts_failed": sum(s.deliveries_failed for s in snapshots),
            "partner_fake": dict(sorted(fake.items())),
            "coordinator_conflicts": self.stats["coordinator_conflicts"],
            "refused_actions": self.stats["refused"],
            "queued_tasks_run_inline": queue.enqueued,
            "cpu_seconds": round(cpu, 2),
            "wall_seconds": round(wall, 2),
            "cpu_ms_per_participant_day": round(1000 * cpu / participant_days, 3)
            if participant_days
            else None,
            "db_rows": total_rows,
            "db_rows_per_participant": round(total_rows / self.c.participants, 1)
            if self.c.participants
            else None,
            "db_rows_by_table": rows,
        }
        series = {
            "days": [s.day.isoformat() for s in snapshots],
            "active": [s.active_participants for s in snapshots],
            "exceptions_opened": [s.exceptions_opened for s in snapshots],
            "exceptions_resolved": [s.exceptions_resolved for s in snapshots],
            "exceptions_per_100_per_day": [
                round(100 * s.exceptions_opened / s.active_participants, 2)
                if s.active_participants
                else 0
                for s in snapshots
            ],
            "automation_rate": [s.automation_rate for s in snapshots],
            "strain_index": [s.strain_index for s in snapshots],
            "backlog_hourly": self.backlog_series,
        }
        config = {
            "program": program.slug,
            "organization": self.org.slug,
            "participants": self.c.participants,
            "days": self.c.days,
            "seed": self.c.seed,
            "faults": self.c.faults.describe(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        }
        return SimResult(summary=summary, series=series, config=config)


def simulate(config: SimConfig) -> SimResult:
    return Simulation(config).run()
