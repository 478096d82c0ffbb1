"""Verify Standard Webhooks-signed callbacks (vendor -> Baton).

`verify_inbound` checks the three headers, a timestamp within ±tolerance
(5 minutes by default), a `v1` HMAC-SHA256 signature computed with the
`standardwebhooks` package over `<id>.<timestamp>.<body>` for any of the
given secrets (rotation), and then records the `webhook-id` per `scope`
(InboundReceipt, unique (scope, webhook_id)) so a replay is refused.

The receipt is written in the caller's transaction: if the caller's work
rolls back, so does the receipt and the vendor's retry is accepted. Callers
that want to answer a replay with 200 check `error.code == "replayed"`.
Receipts are purged after `BATON_INBOUND_RECEIPT_RETENTION` (a scheduled job);
the retention is always longer than the tolerance window, so a purged id can
no longer pass the timestamp check.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from integrations.problems import MAX_JSON_DEPTH, json_deeper_than, json_loads

MAX_ID_LENGTH = 255


class InboundVerificationError(Exception):
    """The callback is not authentic, not fresh, or already seen.

    `code`: missing_headers | bad_timestamp | stale | bad_signature |
    bad_body | replayed | no_secret.
    """

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


def _header(headers: Mapping, name: str) -> str | None:
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    # Django's request.META spelling
    meta = (
        headers.get("HTTP_" + name.upper().replace("-", "_")) if hasattr(headers, "get") else None
    )
    return meta if isinstance(meta, str) else None


def _candidate_signatures(header: str) -> list[bytes]:
    found = []
    for part in header.split(" "):
        version, sep, sig = part.partition(",")
        if not sep or version != "v1":
            continue
        try:
            found.append(base64.b64decode(sig, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify_inbound(
    *,
    secrets: list[str],
    headers: Mapping,
    body: bytes,
    tolerance: timedelta = timedelta(minutes=5),
    scope: str,
) -> dict:
    """Authenticate a callback and return its JSON body (a dict).

    Raises `InboundVerificationError` for anything invalid; never returns
    for a replayed `webhook-id` within `scope`.
    """
    secrets = [s for s in (secrets or []) if s]
    if not secrets:
        raise InboundVerificationError("no secret configured for this sender", code="no_secret")
    msg_id = _header(headers, "webhook-id")
    msg_ts = _header(headers, "webhook-timestamp")
    msg_sig = _header(headers, "webhook-signature")
    if not (msg_id and msg_ts and msg_sig):
        raise InboundVerificationError(
            "webhook-id, webhook-timestamp and webhook-signature are required",
            code="missing_headers",
        )
    if len(msg_id) > MAX_ID_LENGTH or not msg_id.isprintable():
        raise InboundVerificationError("webhook-id is malformed", code="missing_headers")
    if not (msg_ts.isascii() and msg_ts.isdigit() and len(msg_ts) <= 12):
        raise InboundVerificationError(
            "webhook-timestamp must be integer Unix seconds", code="bad_timestamp"
        )
    sent_at = datetime.fromtimestamp(int(msg_ts), tz=UTC)
    now = timezone.now()
    if abs(now - sent_at) > tolerance:
        raise InboundVerificationError(
            "webhook-timestamp is outside the allowed tolerance", code="stale"
        )
    if not isinstance(body, bytes | bytearray):
        raise InboundVerificationError("body must be bytes", code="bad_body")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise InboundVerificationError("body is not UTF-8", code="bad_body") from None

    offered = _candidate_signatures(msg_sig)
    matched = False
    for secret in secrets:
        try:
            expected = Webhook(secret).sign(msg_id, sent_at, text)
        except Exception:  # noqa: S112 - a malformed configured secret must not crash the view
            continue
        expected_bytes = base64.b64decode(expected.split(",", 1)[1])
        if any(hmac.compare_digest(expected_bytes, sig) for sig in offered):
            matched = True
    if not matched:
        raise InboundVerificationError("no matching signature", code="bad_signature")

    try:
        payload = json_loads(text)
    except (ValueError, RecursionError):
        raise InboundVerificationError("body is not JSON", code="bad_body") from None
    if json_deeper_than(payload, MAX_JSON_DEPTH):
        raise InboundVerificationError(
            f"body nests objects and lists deeper than {MAX_JSON_DEPTH} levels", code="bad_body"
        )
    if not isinstance(payload, dict):
        raise InboundVerificationError("body must be a JSON object", code="bad_body")

    from integrations.models import InboundReceipt

    try:
        with transaction.atomic():
            InboundReceipt.objects.create(
                scope=scope[:100], webhook_id=msg_id, sent_at=sent_at, received_at=now
            )
    except IntegrityError:
        raise InboundVerificationError(
            f"webhook-id {msg_id!r} was already received", code="replayed"
        ) from None
    return payload


def inbound_receipts_purge(*, now=None) -> int:
    """Delete receipts older than the retention window; return how many."""
    from django.conf import settings

    from integrations.models import InboundReceipt

    retention = max(settings.BATON_INBOUND_RECEIPT_RETENTION, timedelta(hours=1))
    cutoff = (now or timezone.now()) - retention
    deleted, _ = InboundReceipt.objects.filter(received_at__lt=cutoff).delete()
    return deleted
