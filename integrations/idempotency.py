"""`Idempotency-Key` for every partner POST (IETF httpapi-idempotency-key draft).

- The claim, the view's writes and the stored response are one transaction
  (integrations.api.base.PartnerAPIView): the claim is an
  `INSERT ... ON CONFLICT DO NOTHING` on (client, key), guarded on
  PostgreSQL by a non-blocking advisory lock on (client, key): a second
  request with the key while the first is still running gets 409 at once; one
  after the first committed replays its response (or claims the key if the
  first rolled back). Nothing is left
  behind by a crashed worker: its transaction, claim included, rolls back.
- Same key, same body (fingerprint = method + path + canonical JSON): the
  stored status and bytes are returned, with `Idempotent-Replayed: true`.
- Same key, different body: 422. Same key while the first request is in
  flight: 409 (also for a claim left by an older release that committed
  claims at once; such a claim older than `IN_FLIGHT_TIMEOUT` is taken over).
- Keys are per API client; two clients never share one.
- Records are kept 24 h (`IDEMPOTENCY_TTL`), then purged by the scheduled job
  `integrations.purge_idempotency_keys`.
- 5xx and 429 responses are not stored (the client should retry them).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
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

    Call it inside the transaction that runs the view and stores its response
    (`idempotency_finish`). Raises 422 (same key, different request) or 409
    (a claim still open in this transaction, or an abandoned one).
    """
    from integrations.models import IdempotencyRecord

    print_ = fingerprint(method, path, data)
    now = timezone.now()
    for _attempt in range(3):
        record_id = _claim(client.pk, key, print_, method, path[:300], now)
        if record_id is IN_FLIGHT:
            raise ConflictProblem(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                problem_type="idempotency-in-flight",
            )
        if record_id is not None:
            return Claim(record_id)
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


# `_claim`'s answer when another transaction holds the key right now.
IN_FLIGHT = object()
# Namespaces the advisory lock keys of in-flight claims (PostgreSQL): the
# two-int form, whose key space is separate from single-bigint locks.
CLAIM_LOCK_CLASS = 0x1DE4


def _claim(client_id, key, print_, method, path, now):
    """Insert the claim; its id, None if the key is taken by a finished
    request, or IN_FLIGHT if a request with the key is still running.

    One statement, no savepoint: a conflict does not raise, so it never
    breaks the caller's transaction. On PostgreSQL the claim first takes a
    transaction-level advisory lock on (client, key) without waiting: a
    second request with the key while the first is still in its transaction
    gets IN_FLIGHT (409) at once instead of blocking on the first one's
    uncommitted row. SQLite serializes writers, so there it simply waits."""
    from integrations.models import IdempotencyRecord

    meta = IdempotencyRecord._meta
    quote = connection.ops.quote_name
    columns = ["api_client_id", "key", "fingerprint", "method", "path"]
    columns += ["response_content_type", "created_at"]
    # identifiers from the model, quoted; every value is a parameter
    table = quote(meta.db_table)
    names = ", ".join(quote(c) for c in columns)
    conflict = f"ON CONFLICT ({quote('api_client_id')}, {quote('key')}) DO NOTHING"
    returning = f"RETURNING {quote(meta.pk.column)}"
    placeholders = ", ".join(["%s"] * len(columns))
    created_at = connection.ops.adapt_datetimefield_value(now)
    params = [client_id, key, print_, method, path, "", created_at]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = (
                "WITH lock AS (SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS free), "  # noqa: S608
                f"claimed AS (INSERT INTO {table} ({names}) "
                f"SELECT {placeholders} FROM lock WHERE free {conflict} {returning}) "
                "SELECT (SELECT free FROM lock), (SELECT * FROM claimed)"
            )
            cursor.execute(sql, [CLAIM_LOCK_CLASS, f"{client_id}:{key}", *params])
            free, record_id = cursor.fetchone()
            return record_id if free else IN_FLIGHT
        cursor.execute(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders}) {conflict} {returning}",  # noqa: S608
            params,
        )
        row = cursor.fetchone()
    return row[0] if row else None


def idempotency_finish(claim: Claim, *, status_code: int, body: bytes, content_type: str) -> None:
    """Store the response (inside the view's transaction), or release the key."""
    from integrations.models import IdempotencyRecord

    if status_code in NOT_STORED:
        idempotency_release(claim)
        return
    # one UPDATE per partner POST: written as SQL (no ORM compile on the hot path)
    meta = IdempotencyRecord._meta
    quote = connection.ops.quote_name
    sets = ", ".join(
        f"{quote(c)} = %s"
        for c in ("status_code", "response_body", "response_content_type", "completed_at")
    )
    sql = f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    params = [
        status_code,
        meta.get_field("response_body").get_db_prep_value(body, connection),
        content_type[:100],
        connection.ops.adapt_datetimefield_value(timezone.now()),
        claim.record_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
