"""Writes of the programs app. Every meaningful write goes through one of these."""

from programs.services.audit import audit_record
from programs.services.exceptions import (
    exception_claim,
    exception_claim_next,
    exception_dismiss,
    exception_raise,
    exception_reassign,
    exception_release,
    exception_resolve,
    exception_resolve_for,
    exception_retry,
    exception_snooze,
    exception_wake,
)
from programs.services.programs import (
    program_activate,
    program_load_definition,
    program_pause,
    program_resume,
    program_retire,
    program_version_publish,
)
from programs.services.tenancy import membership_grant, membership_revoke, organization_create

__all__ = [
    "audit_record",
    "exception_claim",
    "exception_claim_next",
    "exception_dismiss",
    "exception_raise",
    "exception_reassign",
    "exception_release",
    "exception_resolve",
    "exception_resolve_for",
    "exception_retry",
    "exception_snooze",
    "exception_wake",
    "membership_grant",
    "membership_revoke",
    "organization_create",
    "program_activate",
    "program_load_definition",
    "program_pause",
    "program_resume",
    "program_retire",
    "program_version_publish",
]
