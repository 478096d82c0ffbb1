"""Channel connectors: how a message leaves Baton for the customer's messaging tool.

Baton never holds a phone number or an email address. A connector hands the
customer's tool what it needs to resolve the contact and send: the template
key, the rendered PHI-free variables, the participant's `external_ref` and
Baton's message id. The tool reports back through the vendor callback
endpoint (messaging app).

Adding a connector is one class and one registration:

    from integrations.connectors import Connector, SendResult, register_connector

    @register_connector
    class AcmeSmsConnector(Connector):
        kind = "acme_sms"
        label = "Acme SMS gateway"

        def send(self, message):
            ...  # talk to the tool; never raise for a delivery problem
            return SendResult.sent(vendor_message_id="acme-123")

A connector must be safe to call twice for the same message (dispatch is at
least once): the message id is the idempotency key the tool dedups on.
This module is the registry only; the configured instances (organization,
URL, secret) live in `messaging.ChannelConnector`, which plugs in here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.utils import timezone

logger = logging.getLogger("baton.connectors")

# The outcomes a connector may report for one send.
SENT = "sent"  # accepted by the tool; delivery is reported later by callback
DELIVERED = "delivered"  # the tool confirmed delivery synchronously (console)
FAILED = "failed"  # could not be sent; `retryable` says whether to try again
UNDELIVERABLE = "undeliverable"  # permanently refused (unknown contact, blocked)


@dataclass(frozen=True)
class OutboundMessage:
    """Everything a connector may see. PHI-free by construction."""

    message_id: int
    organization_id: int
    program_id: int
    channel: str
    template_key: str
    template_version: int
    locale: str
    participant_ref: str
    variables: dict
    body: str
    scheduled_for: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        return f"msg_{self.message_id}"

    def payload(self) -> dict:
        """The JSON document the webhook connector posts (documented contract)."""
        return {
            "type": "message.send",
            "message_id": self.message_id,
            "channel": self.channel,
            "template_key": self.template_key,
            "template_version": self.template_version,
            "locale": self.locale,
            "participant_ref": self.participant_ref,
            "variables": self.variables,
            "body": self.body,
        }


@dataclass(frozen=True)
class SendResult:
    outcome: str
    retryable: bool = False
    vendor_message_id: str = ""
    error: str = ""
    http_status: int | None = None
    duration_ms: int | None = None
    record: dict = field(default_factory=dict)  # what was sent/logged, PHI-free

    @classmethod
    def sent(cls, **kwargs) -> SendResult:
        return cls(outcome=SENT, **kwargs)

    @classmethod
    def delivered(cls, **kwargs) -> SendResult:
        return cls(outcome=DELIVERED, **kwargs)

    @classmethod
    def failed(cls, error: str, *, retryable: bool, **kwargs) -> SendResult:
        return cls(outcome=FAILED, retryable=retryable, error=error[:2000], **kwargs)

    @classmethod
    def undeliverable(cls, error: str, **kwargs) -> SendResult:
        return cls(outcome=UNDELIVERABLE, error=error[:2000], **kwargs)

    @property
    def ok(self) -> bool:
        return self.outcome in (SENT, DELIVERED)


@dataclass(frozen=True)
class CallbackEvent:
    """A vendor callback normalised by the connector: one status or opt-out."""

    type: str  # delivered | failed | undeliverable | opted_out
    message_id: int | None = None
    participant_ref: str = ""
    channel: str = ""
    vendor_message_id: str = ""
    error: str = ""


CALLBACK_TYPES = ("delivered", "failed", "undeliverable", "opted_out")


class CallbackFormatError(ValueError):
    """The callback body does not match the connector's format: `path` names the field."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ConnectorConfig:
    """A configured connector instance, as the registry sees it."""

    id: int | None
    organization_id: int | None
    kind: str
    name: str = ""
    url: str = ""
    secrets: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)


class Connector:
    """Base class. Subclasses set `kind` and `label` and implement `send`."""

    kind: str = ""
    label: str = ""
    needs_url: bool = False
    supports_callbacks: bool = False
    max_workers: int = 1  # sends of one batch run on this many threads
    # The top-level callback fields kept; anything else is stripped before storage.
    callback_fields: tuple[str, ...] = (
        "type",
        "message_id",
        "vendor_message_id",
        "participant_ref",
        "channel",
        "error",
        "occurred_at",
    )

    def __init__(self, config: ConnectorConfig):
        self.config = config

    def send(self, message: OutboundMessage) -> SendResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def send_many(self, messages: list[OutboundMessage]) -> list[SendResult]:
        """Send a batch; results in the same order. Never raises for one failure."""
        if self.max_workers <= 1 or len(messages) <= 1:
            return [self._send_guarded(m) for m in messages]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(messages))) as pool:
            return list(pool.map(self._send_guarded, messages))

    def _send_guarded(self, message: OutboundMessage) -> SendResult:
        try:
            return self.send(message)
        except Exception as exc:  # a connector bug must become a failed send, not a crash
            logger.exception(
                "connector %s crashed sending message %s", self.kind, message.message_id
            )
            return SendResult.failed(f"connector error: {exc.__class__.__name__}", retryable=True)

    def parse_callback(self, payload: dict) -> CallbackEvent:
        """Map a vendor callback body to a CallbackEvent (Baton's format by default).

        Baton's format: {"type": "delivered|failed|undeliverable|opted_out",
        "message_id": <int>, "vendor_message_id"?, "participant_ref"?,
        "channel"?, "error"?}. An opt-out names either the message or the
        participant_ref and channel.
        """
        kind = payload.get("type")
        if kind not in CALLBACK_TYPES:
            raise CallbackFormatError("type", f"must be one of: {', '.join(CALLBACK_TYPES)}")
        message_id = payload.get("message_id")
        if message_id is not None and (
            isinstance(message_id, bool) or not isinstance(message_id, int | str)
        ):
            raise CallbackFormatError("message_id", "must be an integer")
        if isinstance(message_id, str):
            if not message_id.isdigit():
                raise CallbackFormatError("message_id", "must be an integer")
            message_id = int(message_id)
        if message_id is not None and not 0 < message_id < 2**63:
            raise CallbackFormatError("message_id", "is out of range")
        if kind != "opted_out" and message_id is None:
            raise CallbackFormatError("message_id", "is required for a status callback")
        participant_ref = payload.get("participant_ref") or ""
        channel = payload.get("channel") or ""
        if kind == "opted_out" and message_id is None and not (participant_ref and channel):
            raise CallbackFormatError(
                "message_id", "an opt-out needs message_id, or participant_ref and channel"
            )
        for name in ("participant_ref", "channel", "vendor_message_id", "error"):
            value = payload.get(name)
            if value is not None and not isinstance(value, str):
                raise CallbackFormatError(name, "must be a string")
        return CallbackEvent(
            type=kind,
            message_id=message_id,
            participant_ref=participant_ref[:200],
            channel=channel[:20],
            vendor_message_id=(payload.get("vendor_message_id") or "")[:200],
            error=(payload.get("error") or "")[:500],
        )

    def close(self) -> None:
        """Release pooled resources (HTTP clients)."""


_registry: dict[str, type[Connector]] = {}


def register_connector(cls: type[Connector]) -> type[Connector]:
    """Register a connector class under its `kind` (usable as a decorator)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a `kind`")
    _registry[cls.kind] = cls
    return cls


def connector_class(kind: str) -> type[Connector]:
    try:
        return _registry[kind]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise ValueError(f"unknown connector kind {kind!r}; registered: {known}") from None


def connector_kinds() -> list[tuple[str, str]]:
    return sorted((k, c.label or k) for k, c in _registry.items())


def build_connector(config: ConnectorConfig) -> Connector:
    return connector_class(config.kind)(config)


# --- built-in connectors ----------------------------------------------------------


@register_connector
class ConsoleConnector(Connector):
    """Writes the would-be send to the log; the caller stores `record` in the
    database (messaging.DeliveryAttempt). The demo and development default.

    It reports the message delivered at once, so demo journeys that wait for
    delivery move on without a vendor.
    """

    kind = "console"
    label = "Console (log only; demo and development)"

    def send(self, message: OutboundMessage) -> SendResult:
        record = {"would_send": message.payload(), "connector": self.config.name or "console"}
        logger.info(
            "console send: message=%s channel=%s template=%s v%s participant_ref=%s",
            message.message_id,
            message.channel,
            message.template_key,
            message.template_version,
            message.participant_ref,
        )
        return SendResult.delivered(
            vendor_message_id=f"console-{message.message_id}", record=record
        )


@register_connector
class WebhookConnector(Connector):
    """POSTs a Standard Webhooks-signed JSON request to the customer's tool.

    The body is `OutboundMessage.payload()`; `webhook-id` is the message's
    idempotency key (`msg_<id>`), stable across retries so the tool can
    dedup. The URL passes the SSRF guard once per dispatched batch
    (`send_many`), which pins the address every send of the batch connects
    to; redirects are never followed. 2xx = sent (the tool may answer
    {"status": "delivered"} or {"vendor_message_id": ...});
    408/425/429/5xx/timeouts are retryable;
    410 and 422 are undeliverable; any other 4xx or 3xx is a failure.
    """

    kind = "webhook"
    label = "Webhook to the customer's messaging tool"
    needs_url = True
    supports_callbacks = True
    max_workers = 8
    _pool: ThreadPoolExecutor | None = None

    def send(self, message: OutboundMessage) -> SendResult:
        return self._send_to(message, target=None)

    def send_many(self, messages: list[OutboundMessage]) -> list[SendResult]:
        """The SSRF check (DNS included) runs once per batch; every send of the
        batch connects to the address it pinned. Sends run on a pool of
        `max_workers` threads kept for the connector's lifetime (one dispatch
        run); no database rows are locked while they run."""
        from integrations.ssrf import HostResolutionError, UnsafeURLError, check_url

        if not messages:
            return []
        try:
            target = check_url(self.config.url, for_send=True)
        except (HostResolutionError, UnsafeURLError):
            target = None  # each send re-checks and reports the refusal as its outcome
        if len(messages) == 1:
            return [self._send_guarded_to(messages[0], target)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=f"connector-{self.kind}"
            )
        return list(self._pool.map(lambda m: self._send_guarded_to(m, target), messages))

    def _send_guarded_to(self, message: OutboundMessage, target) -> SendResult:
        try:
            return self._send_to(message, target=target)
        except Exception as exc:  # a connector bug must become a failed send, not a crash
            logger.exception(
                "connector %s crashed sending message %s", self.kind, message.message_id
            )
            return SendResult.failed(f"connector error: {exc.__class__.__name__}", retryable=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _send_to(self, message: OutboundMessage, *, target) -> SendResult:
        from integrations.delivery_http import send_webhook
        from integrations.signing import sign_headers

        body = json.dumps(message.payload(), separators=(",", ":"), sort_keys=True).encode()
        headers = sign_headers(
            secrets=list(self.config.secrets),
            msg_id=message.idempotency_key,
            timestamp=timezone.now(),
            body=body,
        )
        # Pinned address (checked by send_many, or here), no redirects, 15 s: delivery_http.
        result = send_webhook(url=self.config.url, headers=headers, body=body, target=target)
        status = result.status_code
        common = {"http_status": status, "duration_ms": result.latency_ms}
        if status is None:
            if result.error_class == "unsafe_url":
                return SendResult.failed(f"refused URL: {result.error}", retryable=False, **common)
            return SendResult.failed(result.error or result.error_class, retryable=True, **common)
        if 200 <= status < 300:
            data = {}
            try:
                parsed = json.loads(result.snippet) if result.snippet.strip() else {}
                data = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                pass
            vendor_id = data.get("vendor_message_id")
            vendor_id = vendor_id[:200] if isinstance(vendor_id, str) else ""
            if data.get("status") == DELIVERED:
                return SendResult.delivered(vendor_message_id=vendor_id, **common)
            return SendResult.sent(vendor_message_id=vendor_id, **common)
        if status in (410, 422):
            return SendResult.undeliverable(f"the tool answered HTTP {status}", **common)
        retryable = status in (408, 425, 429) or status >= 500
        return SendResult.failed(f"the tool answered HTTP {status}", retryable=retryable, **common)


def describe(result: SendResult) -> dict:
    """A PHI-free summary of a send result (for attempt rows and logs)."""
    data = asdict(result)
    data.pop("record", None)
    return data


def kinds_with_callbacks() -> Iterable[str]:
    return [k for k, c in _registry.items() if c.supports_callbacks]
