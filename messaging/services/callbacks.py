"""Vendor callbacks: delivery reports and opt-outs from the customer's tool.

Verified with the inbound Standard Webhooks verifier (the `webhook-id` is
recorded per connector, so a replay is answered 200 "duplicate" and changes
nothing). Bodies are PHI-guarded before anything is stored: only the fields
of the callback contract are kept, and any of those that carries an
identifier (a phone number in `error`, say) is removed too; what was removed
(path and kind, never the value) goes into an audit note.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from django.db import transaction

from integrations.connectors import CallbackFormatError, build_connector
from integrations.inbound import InboundVerificationError, verify_inbound
from integrations.payloads import PayloadValueError, require_storable
from integrations.phi import phi_scan
from messaging.errors import ConnectorNotFound, MessageNotFound
from messaging.models import CallbackLog, Channel, ChannelConnector, Message, MessageState
from messaging.services.optouts import opt_out_record
from messaging.services.transitions import apply_transition
from programs.actors import Actor
from programs.services import audit_record

STRIPPED_NOTE = "identifier or free-text fields removed from a vendor callback before storage"
# Keys a vendor uses for the message text: never stored, whatever they contain.
TEXT_KEYS = frozenset({"text", "body", "message", "message_text", "content", "reply", "sms_body"})


@dataclass
class CallbackOutcome:
    status: str  # applied | duplicate | ignored
    detail: str = ""
    message_id: int | None = None
    stripped: list = field(default_factory=list)


def strip_identifiers(payload: dict, *, keep: tuple[str, ...]) -> tuple[dict, list[dict]]:
    """Keep only the contract fields `keep` (top level); drop any that carries
    an identifier. Return (clean payload, [{"path", "kind"}] removed)."""
    stripped = []
    clean = {}
    for key, value in payload.items():
        path = f"$.{key}" if str(key).isidentifier() else f"$['{key}']"
        if key not in keep:
            kind = "message_text" if str(key).lower() in TEXT_KEYS else "not_in_contract"
            found = phi_scan({key: value}, limit=1)
            stripped.append({"path": path, "kind": found[0].kind if found else kind})
            continue
        clean[key] = copy.deepcopy(value)
    for finding in phi_scan(clean, limit=50):
        top = finding.path[2:].split(".")[0].split("[")[0]
        if top in clean:
            del clean[top]
            stripped.append({"path": f"$.{top}", "kind": finding.kind})
    return clean, sorted(stripped, key=lambda s: s["path"])


def _actor(connector: ChannelConnector) -> Actor:
    return Actor(
        kind=Actor.SYSTEM, id=f"connector:{connector.pk}", label=f"connector:{connector.slug}"
    )


_STATUS_TRANSITIONS = {
    "delivered": "mark_delivered",
    "failed": "mark_failed",
    "undeliverable": "mark_undeliverable",
}


def callback_receive(*, connector_id: int, headers, body: bytes) -> CallbackOutcome:
    """Verify and apply one vendor callback, in one transaction.

    Raises ConnectorNotFound (unknown or disabled connector), InboundVerificationError
    (bad signature, stale timestamp...), CallbackFormatError (a field path),
    MessageNotFound (the message is not this connector's organization's). A
    status that the message has already reached, or cannot reach any more
    (delivered after failed), is recorded and ignored: replays never double
    an effect.
    """
    connector = ChannelConnector.objects.filter(pk=connector_id, enabled=True).first()
    if connector is None:
        raise ConnectorNotFound(f"no enabled connector {connector_id}")
    instance = build_connector(connector.as_config())
    actor = _actor(connector)
    with transaction.atomic():
        try:
            payload = verify_inbound(
                secrets=list(connector.as_config().secrets),
                headers=headers,
                body=body,
                scope=f"messaging.connector:{connector.pk}",
            )
        except InboundVerificationError as exc:
            if exc.code == "replayed":
                return CallbackOutcome(status="duplicate", detail=exc.message)
            raise
        webhook_id = _header(headers, "webhook-id")
        clean, stripped = strip_identifiers(payload, keep=instance.callback_fields)
        try:
            require_storable(clean)
        except PayloadValueError as exc:
            raise CallbackFormatError(exc.path, exc.message) from None
        event = instance.parse_callback(clean)
        message = None
        if event.message_id is not None:
            message = (
                Message.objects.select_for_update()
                .filter(pk=event.message_id, organization_id=connector.organization_id)
                .first()
            )
            if message is None:
                raise MessageNotFound(f"message {event.message_id} is not known to this connector")
        if stripped:
            audit_record(
                actor=actor,
                action="messaging.callback.fields_stripped",
                object_type="messaging.channelconnector",
                object_id=connector.pk,
                organization=connector.organization_id,
                reason=STRIPPED_NOTE,
                metadata={"webhook_id": webhook_id, "stripped": stripped},
            )
        if event.type == "opted_out":
            participant_ref = message.participant_ref if message else event.participant_ref
            channel = event.channel or (message.channel if message else "")
            if channel not in Channel.values:
                raise CallbackFormatError("channel", f"must be one of: {', '.join(Channel.values)}")
            _opt_out, created = opt_out_record(
                organization=connector.organization_id,
                participant_ref=participant_ref,
                channel=channel,
                source=f"connector:{connector.slug}",
                actor=actor,
                message=message,
            )
            outcome = CallbackOutcome(
                status="applied" if created else "ignored",
                detail="opt-out recorded" if created else "already opted out",
            )
        else:
            outcome = _apply_status(message, event, actor)
        outcome.message_id = message.pk if message else None
        outcome.stripped = stripped
        CallbackLog.objects.create(
            connector=connector,
            webhook_id=webhook_id or "",
            message=message,
            event_type=event.type,
            payload=clean,
            stripped=stripped,
            outcome=f"{outcome.status}: {outcome.detail}"[:40],
        )
    return outcome


def _apply_status(message: Message, event, actor) -> CallbackOutcome:
    if message.state == event.type:
        return CallbackOutcome(status="ignored", detail=f"already {message.state}")
    if message.state not in (MessageState.QUEUED, MessageState.SENT):
        return CallbackOutcome(status="ignored", detail=f"message is {message.state}")
    if event.vendor_message_id and not message.vendor_message_id:
        message.vendor_message_id = event.vendor_message_id
    from django.utils import timezone

    kwargs = {"now": timezone.now()}
    if event.type != "delivered":
        kwargs["error"] = event.error or f"reported {event.type} by the vendor"
    apply_transition(
        message,
        _STATUS_TRANSITIONS[event.type],
        actor=actor,
        reason=f"vendor callback: {event.type}",
        **kwargs,
    )
    return CallbackOutcome(status="applied", detail=f"message {event.type}")


def _header(headers, name: str) -> str:
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return headers.get("HTTP_" + name.upper().replace("-", "_"), "") or ""
