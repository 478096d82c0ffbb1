"""`Idempotency-Key` for every partner POST (IETF httpapi-idempotency-key draft).

- First request with a key: a record is claimed (committed at once, so other
  requests see it), the view runs, and its status and exact body bytes are
  stored in the same transaction as the view's writes.
- Same key, same body (fingerprint = method + path + canonical JSON): the
  stored status and bytes are returned, with `Idempotent-Replayed: true`.
- Same key, different body: 422. Same key while the first is in flight: 409.
- Keys are per API client; two clients never share one.
- Records are kept 24 h (`IDEMPOTENCY_TTL`), then purged by the scheduled job
  `integrations.purge_idempotency_keys`. A claim left in flight by a crashed
  worker is taken over after `IN_FLIGHT_TIMEOUT`.
- 5xx and 429 responses are not stored (the client should retry them).
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.problems import ConflictProblem, Unprocessable
from programs.jobs import periodic_job
from programs.registries import register_schedule

HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = timedelta(hours=24)
IN_FLIGHT_TIMEOUT = timedelta(minutes=2)
_KEY_SYNTAX = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
NOT_STORED = {429} | set(range(500, 600))


def fingerprint(method: str, path: str, data) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


@dataclass
class Claim:
    record_id: int


@dataclass
class Replay:
    status_code: int
    body: bytes
    content_type: str


def read_key(request) -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if key.startswith('"') and key.endswith('"') and len(key) >= 2:
        key = key[1:-1]  # the draft sends it as a structured-field string
    if not _KEY_SYNTAX.match(key):
        raise Unprocessable(
            "Idempotency-Key must be 1-255 printable ASCII characters.",
            errors=[{"path": f"header:{HEADER}", "message": "invalid key", "code": "invalid_key"}],
        )
    return key


def idempotency_begin(*, client, key: str, method: str, path: str, data) -> Claim | Replay:
    """Claim `key` for this request, or return the stored response to replay.

    Raises 422 (same key, different request) or 409 (first still in flight).
    """
    from integrations.models import IdempotencyRecord

    print_ = fingerprint(method, path, data)
    now = timezone.now()
    # Outside a transaction the claim is one autocommitted INSERT (committed at
    # once, so concurrent requests see it); inside one, a savepoint keeps a
    # unique-key conflict from breaking the caller's transaction.
    in_transaction = transaction.get_connection().in_atomic_block
    for _attempt in range(3):
        try:
            with transaction.atomic() if in_transaction else nullcontext():
                record = IdempotencyRecord.objects.create(
                    api_client_id=client.pk,
                    key=key,
                    fingerprint=print_,
                    method=method,
                    path=path[:300],
                    created_at=now,
                )
            return Claim(record.pk)
        except IntegrityError:
            pass
        record = (
            IdempotencyRecord.objects.filter(api_client_id=client.pk, key=key)
            .only(
                "id",
                "fingerprint",
                "status_code",
                "created_at",
                "completed_at",
                "response_body",
                "response_content_type",
            )
            .first()
        )
        if record is None:
            continue  # purged meanwhile: claim again
        stale_claim = record.status_code is None and now - record.created_at > IN_FLIGHT_TIMEOUT
        if now - record.created_at > IDEMPOTENCY_TTL or stale_claim:
            IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at).delete()
            continue
        if record.fingerprint != print_:
            raise Unprocessable(
                "This Idempotency-Key was already used with a different request.",
                problem_type="idempotency-key-reused",
                errors=[
                    {
                        "path": f"header:{HEADER}",
                        "message": "key reused with another body or path",
                        "code": "key_reused",
                    }
                ],
            )
        if record.status_code is None:
            raise ConflictProblem(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                problem_type="idempotency-in-flight",
            )
        return Replay(
            record.status_code, bytes(record.response_body or b""), record.response_content_type
        )
    raise ConflictProblem(
        "A request with this Idempotency-Key is being processed; retry shortly.",
        problem_type="idempotency-in-flight",
    )


def idempotency_finish(claim: Claim, *, status_code: int, body: bytes, content_type: str) -> None:
    """Store the response (inside the view's transaction), or release the key."""
    from integrations.models import IdempotencyRecord

    if status_code in NOT_STORED:
        idempotency_release(claim)
        return
    IdempotencyRecord.objects.filter(pk=claim.record_id).update(
        status_code=status_code,
        response_body=body,
        response_content_type=content_type[:100],
        completed_at=timezone.now(),
    )


def idempotency_release(claim: Claim) -> None:
    """Forget a claim whose request failed unexpectedly, so a retry can run."""
    from integrations.models import IdempotencyRecord

    IdempotencyRecord.objects.filter(pk=claim.record_id, status_code__isnull=True).delete()


@periodic_job("integrations.purge_idempotency_keys")
def purge_expired_keys(batch_size: int = 5000) -> dict:
    """Delete idempotency records older than 24 hours, in batches."""
    from integrations.models import IdempotencyRecord

    cutoff = timezone.now() - IDEMPOTENCY_TTL
    purged = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            break
        purged += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch_size:
            break
    return {"purged": purged}


register_schedule(
    "integrations.purge_idempotency_keys",
    "integrations.idempotency.purge_expired_keys",
    minutes=60,
    description="Delete Idempotency-Key records older than 24 hours.",
)
