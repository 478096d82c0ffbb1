"""Tasks of the messaging app. Tasks take ids and may run twice."""

from messaging.services import messages_dispatch_due
from programs.jobs import periodic_job


@periodic_job("messaging.dispatch_due_messages")
def dispatch_due_messages(batch_size: int = 200) -> dict:
    """Send every due message; safe on several workers (skip_locked claims)."""
    return messages_dispatch_due(batch_size=batch_size)
