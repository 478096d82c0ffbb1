"""How the console item page shows items about enrollments and steps.

Registered with programs.registries.register_subject_context, so the
programs console renders them without importing participants.
"""

from __future__ import annotations

from django.urls import reverse

from participants.models import Enrollment, StepInstance
from participants.timeline import enrollment_timeline
from programs.registries import SubjectContext, register_subject_context

RECENT_ROWS = 12


def _enrollment_context(enrollment: Enrollment, step: StepInstance | None = None):
    fields = [
        ("Participant", enrollment.participant.external_ref),
        ("Program", enrollment.program.name),
        ("Enrollment", f"#{enrollment.pk} · {enrollment.get_state_display()}"),
        ("In this state since", f"{enrollment.state_changed_at:%Y-%m-%d %H:%M} UTC"),
    ]
    if step is not None:
        fields += [
            ("Step", f"{step.title} ({step.get_state_display()})"),
            ("Step due", f"{step.due_at:%Y-%m-%d %H:%M} UTC" if step.due_at else "—"),
        ]
    # The newest few rows only: each source is LIMITed in the database.
    rows = enrollment_timeline(enrollment, limit=RECENT_ROWS, newest_first=True)
    rows.sort(key=lambda r: r.at, reverse=True)
    return SubjectContext(
        title="Participant context",
        fields=fields,
        rows=rows[:RECENT_ROWS],
        links=[
            (
                "Open the full timeline",
                reverse("participants_console:timeline", args=[enrollment.pk]),
            )
        ],
    )


def enrollment_subject(exception):
    if not exception.subject_id.isdigit():
        return None
    enrollment = (
        Enrollment.objects.filter(
            pk=exception.subject_id, organization_id=exception.organization_id
        )
        .select_related("participant", "program")
        .first()
    )
    return _enrollment_context(enrollment) if enrollment else None


def step_subject(exception):
    if not exception.subject_id.isdigit():
        return None
    step = (
        StepInstance.objects.filter(
            pk=exception.subject_id, enrollment__organization_id=exception.organization_id
        )
        .select_related("enrollment__participant", "enrollment__program")
        .first()
    )
    return _enrollment_context(step.enrollment, step) if step else None


def register():
    register_subject_context("participants.enrollment", enrollment_subject)
    register_subject_context("participants.stepinstance", step_subject)
