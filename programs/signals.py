"""Signals higher apps connect to (integrations writes them to the outbox).

They fire inside the transaction of the change, so a receiver that writes
rows commits or rolls back together with it. Receivers must not do I/O.
"""

from django.dispatch import Signal

# kwargs: exception (OpsException), actor (Actor)
exception_opened = Signal()
exception_resolved = Signal()
