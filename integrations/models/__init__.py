"""Models of the integrations app, one module per concern."""

from integrations.models.outbox import OutboxEvent

__all__ = ["OutboxEvent"]
