"""Turn programs' signals into outbox events (same transaction)."""

from integrations.outbox import outbox_write


def _exception_payload(exception):
    return {
        "exception_id": exception.pk,
        "kind": exception.kind,
        "severity": exception.severity,
        "state": exception.state,
        "program_id": exception.program_id,
        "subject_type": exception.subject_type,
        "subject_id": exception.subject_id,
        "occurred_at": exception.last_seen_at.isoformat(),
    }


def on_exception_opened(sender, exception, actor, **kwargs):
    outbox_write(
        organization=exception.organization_id,
        event_type_name="programs.exception.opened",
        payload=_exception_payload(exception),
    )


def on_exception_resolved(sender, exception, actor, **kwargs):
    outbox_write(
        organization=exception.organization_id,
        event_type_name="programs.exception.resolved",
        payload={**_exception_payload(exception), "auto": exception.auto_resolved},
    )
