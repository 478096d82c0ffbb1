"""Signals of the messaging app (participants connects to them).

Sent inside the transaction of the change, so a receiver's writes commit or
roll back with it. Receivers must not do I/O.
"""

from django.dispatch import Signal

# kwargs: message (Message), from_state (str, "" on creation), to_state (str)
message_status_changed = Signal()

# kwargs: messages (list of Message). Sent once per recorded dispatch batch,
# inside its transaction, *before* the per-change `message_status_changed`
# signals of that batch, so a receiver can load what it needs in one query.
message_status_batch = Signal()
