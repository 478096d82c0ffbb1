"""Reminders for overdue steps.

A step definition may ask for one: `message: {template: ..., reminder_template:
invitation_reminder}`. When such a step is overdue, `overdue_reminders_schedule`
schedules the reminder template for the participant through messaging
(`messages_schedule_many`: quiet hours, daily cap, opt-outs and dedup apply as
for any message), within 24 hours of the step going overdue, at most once per
step: a step that already has a reminder
message, in any state (a suppressed one included), is not asked again.

It runs right after each SLA sweep (`participants.sla_sweep` job), set-based
in batches: one query finds the program versions that ask for reminders, one
per batch finds their overdue steps without a reminder, one
`messages_schedule_many` per program and template schedules them. A program
without reminders costs one small query per sweep.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from participants.models import StepInstance, StepState
from programs.actors import Actor
from programs.models import ProgramVersion

logger = logging.getLogger(__name__)

SYSTEM = Actor.system("participants.overdue_reminders")
# Only steps that went overdue this recently are looked at: it bounds each
# run's scan as overdue steps pile up, and a reminder a day late is no nudge.
REMINDER_WINDOW = timedelta(hours=24)


def reminder_steps() -> dict[tuple[int, str], str]:
    """{(program version id, step key): reminder template key} of every
    version whose definition asks for a reminder on some step."""
    found = {}
    for version in ProgramVersion.objects.only("pk", "definition"):
        for stage in version.definition.get("stages", []):
            for step in stage.get("steps", []):
                template = (step.get("message") or {}).get("reminder_template")
                if template:
                    found[(version.pk, step["key"])] = template
    return found


def overdue_reminders_schedule(*, batch_size: int = 500, max_batches: int = 20) -> dict:
    """Schedule the reminder of each overdue step whose definition asks for
    one and that has none yet. Returns counts. Idempotent (a re-run finds the
    reminders already there)."""
    from messaging.errors import TemplateNotFound
    from messaging.models import Message, MessageKind
    from messaging.services.schedule import ScheduleRequest, messages_schedule_many

    stats = {"reminders": 0, "steps": 0, "missing_template": 0}
    wanted = reminder_steps()
    if not wanted:
        return stats
    broken: set[tuple[int, str]] = set()  # (version, step key) whose template is missing
    has_reminder = Message.objects.filter(
        step_instance_id=OuterRef("pk"), kind=MessageKind.REMINDER
    )
    since = timezone.now() - REMINDER_WINDOW
    after = 0  # keyset: each run moves forward through the steps
    for _ in range(max_batches):
        pairs = [pair for pair in wanted if pair not in broken]
        if not pairs:
            break
        which = Q()
        for version_id, step_key in pairs:
            which |= Q(enrollment__program_version_id=version_id, step_key=step_key)
        steps = list(
            StepInstance.objects.filter(
                which, state=StepState.OVERDUE, overdue_at__gte=since, pk__gt=after
            )
            .filter(~Exists(has_reminder))
            .select_related("enrollment__participant", "enrollment__program")
            .order_by("pk")[:batch_size]
        )
        if not steps:
            break
        after = steps[-1].pk
        groups = defaultdict(list)
        for step in steps:
            version_id = step.enrollment.program_version_id
            groups[(version_id, step.step_key)].append(step)
        for (version_id, step_key), group in groups.items():
            template = wanted[(version_id, step_key)]
            requests = [
                ScheduleRequest(
                    organization=step.enrollment.organization_id,
                    program=step.enrollment.program,
                    enrollment_id=step.enrollment_id,
                    participant_ref=step.enrollment.participant.external_ref,
                    participant_timezone=step.enrollment.participant.timezone,
                    locale=step.enrollment.participant.locale,
                    template_key=template,
                    step_instance_id=step.pk,
                    step_title=step.title,
                    due_at=step.due_at,
                    kind=MessageKind.REMINDER,
                )
                for step in group
            ]
            try:
                results = messages_schedule_many(requests=requests, actor=SYSTEM)
            except TemplateNotFound as exc:
                broken.add((version_id, step_key))
                stats["missing_template"] += len(group)
                logger.warning(
                    "overdue step %s of program version %s asks for reminder %r, "
                    "which has no published template: %s",
                    step_key,
                    version_id,
                    template,
                    exc,
                )
                continue
            stats["steps"] += len(group)
            stats["reminders"] += sum(1 for _message, created in results if created)
        if len(steps) < batch_size:
            break
    return stats
