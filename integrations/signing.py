"""Standard Webhooks signing (produced with the `standardwebhooks` package).

Secrets look like `whsec_<base64 of 32 random bytes>`. During rotation an
endpoint has two valid secrets and each message carries one signature per
secret, space-separated, so the partner may verify with either.
"""

from __future__ import annotations

import base64
import secrets as _secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def is_valid_secret(value: str) -> bool:
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        return False
    return len(raw) >= 24


def mask_secret(value: str) -> str:
    """What lists and logs show instead of the secret."""
    return f"{SECRET_PREFIX}…{value[-4:]}" if value else ""


def unix_seconds(timestamp: datetime) -> int:
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return int(timestamp.timestamp())


def sign_headers(*, secrets: list[str], msg_id: str, timestamp: datetime, body: bytes) -> dict:
    """Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` for `body`.

    One `v1,<sig>` per secret (rotation overlap), space-separated.
    """
    if not secrets:
        raise ValueError("at least one secret is required to sign")
    # The library formats the timestamp after replacing its tzinfo with UTC,
    # so hand it a UTC datetime (an aware non-UTC one would be mis-signed).
    ts = datetime.fromtimestamp(unix_seconds(timestamp), tz=UTC)
    data = body.decode("utf-8")
    signatures = [_webhook(secret).sign(msg_id, ts, data) for secret in secrets if secret]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(unix_seconds(ts)),
        "webhook-signature": " ".join(signatures),
    }


@lru_cache(maxsize=512)
def _webhook(secret: str) -> Webhook:
    """The library's signer for `secret` (decoding the key once, not per message)."""
    return Webhook(secret)


def signer_for(secrets: list[str]) -> Callable[[str, bytes], dict]:
    """A function (msg_id, body) -> headers signing with `secrets` at the
    current second: what the dispatcher prepares once per endpoint and batch
    (same headers as `sign_headers`, one `v1,<sig>` per secret)."""
    webhooks = tuple(_webhook(secret) for secret in secrets if secret)
    if not webhooks:
        raise ValueError("at least one secret is required to sign")

    def sign(msg_id: str, body: bytes) -> dict:
        seconds = int(time.time())
        ts = datetime.fromtimestamp(seconds, tz=UTC)
        data = body.decode("utf-8")
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": " ".join(w.sign(msg_id, ts, data) for w in webhooks),
        }

    return sign
