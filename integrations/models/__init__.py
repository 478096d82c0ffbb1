"""Models of the integrations app, one module per concern."""

from integrations.models.api_clients import (  # noqa: F401
    ApiClient,
    ApiPermission,
    IdempotencyRecord,
    ProgramPhiAllowance,
)
from integrations.models.outbox import OutboxEvent
from integrations.models.webhooks import (  # noqa: F401
    Attempt,
    BreakerState,
    Delivery,
    DeliveryState,
    InboundReceipt,
    WebhookEndpoint,
)

__all__ = ["OutboxEvent"]
