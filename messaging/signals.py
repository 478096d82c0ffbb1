"""Signals of the messaging app (participants connects to them).

Sent inside the transaction of the change, so a receiver's writes commit or
roll back with it. Receivers must not do I/O.
"""

from django.dispatch import Signal

# kwargs: message (Message), from_state (str, "" on creation), to_state (str)
message_status_changed = Signal()
