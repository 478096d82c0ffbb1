"""Writes of the participants app: every meaningful change goes through one of
these (keyword-only, `actor=` an Actor or User, no request objects)."""

from participants.services.enrollments import (
    enrollment_allowed_transitions,
    enrollment_open,
    enrollment_transition,
)
from participants.services.events import IngestResult, event_ingest, events_ingest_many
from participants.services.participants import participant_upsert
from participants.services.steps import (
    compute_due_at,
    step_complete,
    step_complete_for_message,
    step_skip,
)
from participants.services.sweep import sla_sweep

__all__ = [
    "IngestResult",
    "compute_due_at",
    "enrollment_allowed_transitions",
    "enrollment_open",
    "enrollment_transition",
    "event_ingest",
    "events_ingest_many",
    "participant_upsert",
    "sla_sweep",
    "step_complete",
    "step_complete_for_message",
    "step_skip",
]
