"""Outbox -> deliveries -> partner HTTP: fan-out, claim, send, record.

Flow:
1. `fanout(event_ids)` (after commit, and from the sweep) creates one
   `Delivery` per event x enabled endpoint that wants the event type. It is
   idempotent (unique (event, endpoint)) and marks the events dispatched.
2. `drain()` repeatedly claims a batch of due deliveries with
   `select_for_update(skip_locked=True)` in a short transaction (state ->
   delivering with a lease), commits, sends them from a few threads with
   pooled keep-alive connections and no transaction open, then records
   attempts and outcomes in a second short transaction. Claim and record
   are set-based: a fixed number of statements per batch, rows carried as
   `Claimed` values rather than model instances (only failures load models
   for the state machine). A worker killed mid-batch leaves rows
   `delivering` with a lease; once it expires any drain reclaims them and
   sends the same webhook-id and body again (at-least-once).
3. Outcomes drive retries (per-endpoint schedule with jitter, Retry-After on
   429/503), dead letters (one `delivery_dead` item per endpoint and event
   type), 410 (endpoint disabled, `endpoint_down` item) and the circuit
   breaker (one `endpoint_down` item when it opens; probes; auto-resolve).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from integrations.delivery_http import (
    TIMEOUT_SECONDS,
    SendResult,
    http_transport,
    new_transport,
    send_webhook,
)
from integrations.delivery_outcomes import (
    apply_breaker,
    close_breaker,
    disable_gone_endpoint,
    raise_dead,
    resolve_recovered_dead,
)
from integrations.models import (
    Attempt,
    BreakerState,
    Delivery,
    DeliveryState,
    OutboxEvent,
    WebhookEndpoint,
)
from integrations.models.webhooks import DUE_STATES
from integrations.signing import signer_for
from integrations.ssrf import HostResolutionError, UnsafeURLError, check_url
from programs.actors import Actor

logger = logging.getLogger(__name__)

TEST_EVENT_TYPE = "integrations.endpoint.test"
SYSTEM = Actor.system("webhook_dispatcher")

_local = threading.local()


# --- bodies and ids ------------------------------------------------------------


def webhook_id_for(event_id: int) -> str:
    return f"msg_{event_id}"


def event_body(event: OutboxEvent) -> bytes:
    """The exact bytes sent for `event`: deterministic, so retries, replays
    and re-sends after a crash are byte-identical."""
    return _body(
        event.pk,
        event.event_type,
        event.occurred_at,
        event.sequence_key,
        event.sequence,
        event.payload,
    )


def _body(event_id, event_type, occurred_at, sequence_key, sequence, payload) -> bytes:
    """`event_body` from column values (the dispatcher reads rows, not models)."""
    document = {
        "type": event_type,
        "timestamp": occurred_at.astimezone(UTC).isoformat(),
        "event_id": event_id,
        "sequence_key": sequence_key or None,
        "sequence": sequence,
        "data": payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


# --- fan-out -------------------------------------------------------------------


def fanout(event_ids=None, *, limit: int = 2000) -> int:
    """Create deliveries for undispatched events (all of them when
    `event_ids` is None, oldest first, up to `limit`); return how many
    deliveries were created. Idempotent: unique (event, endpoint)."""
    qs = OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")
    if event_ids is not None:
        qs = qs.filter(pk__in=list(event_ids))
    return _fanout(list(qs[:limit]))


def sweep_outbox(*, batch: int = 2000, max_batches: int = 50) -> tuple[int, int]:
    """Fan out events the after-commit hook left behind.
    Returns (events, deliveries)."""
    events_seen = created = 0
    for _ in range(max_batches):
        events = list(OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")[:batch])
        if not events:
            break
        events_seen += len(events)
        created += _fanout(events)
    return events_seen, created


def _fanout(events) -> int:
    if not events:
        return 0
    org_ids = {e.organization_id for e in events}
    endpoints: dict[int, list[WebhookEndpoint]] = defaultdict(list)
    for endpoint in WebhookEndpoint.objects.filter(organization_id__in=org_ids, enabled=True):
        endpoints[endpoint.organization_id].append(endpoint)
    now = timezone.now()
    rows = []
    for event in events:
        for endpoint in endpoints.get(event.organization_id, ()):
            if event.event_type == TEST_EVENT_TYPE:
                if event.payload.get("endpoint_id") != endpoint.pk:
                    continue
            elif not endpoint.wants(event.event_type):
                continue
            rows.append(
                Delivery(
                    organization_id=event.organization_id,
                    event=event,
                    endpoint=endpoint,
                    event_type=event.event_type,
                    webhook_id=webhook_id_for(event.pk),
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    event_ids = [e.pk for e in events]
    if not rows:
        # No endpoint wants these events (the common case for an organization
        # without webhooks): one UPDATE marks them, no transaction needed.
        OutboxEvent.objects.filter(pk__in=event_ids).update(dispatched_at=now)
        return 0
    with transaction.atomic():
        Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        OutboxEvent.objects.filter(pk__in=event_ids).update(dispatched_at=now)
    return len(rows)


def enqueue_drain() -> None:
    """Ask the task queue to drain (skipped inside a running drain, which
    loops until nothing is due anyway)."""
    if getattr(_local, "draining", False):
        return
    from django_q.tasks import async_task

    async_task("integrations.tasks.webhooks_drain", task_name="webhooks_drain")


def after_commit(event_ids) -> None:
    """outbox_write's after-commit hook. Never raises: the caller's change is
    already committed, and the sweep picks up whatever fails here."""
    try:
        if fanout(event_ids):
            enqueue_drain()
    except Exception:
        logger.exception("webhook fan-out failed for events %s; the sweep will retry", event_ids)


# --- claiming ------------------------------------------------------------------


_label_cache: tuple[int, str] | None = None


def worker_label() -> str:
    """`host:pid` of this process (cached per pid: a fork gets its own)."""
    global _label_cache
    pid = os.getpid()
    if _label_cache is None or _label_cache[0] != pid:
        _label_cache = (pid, f"{socket.gethostname()}:{pid}")
    return _label_cache[1]


def _lease_until(now):
    return now + timedelta(seconds=settings.BATON_WEBHOOK_LEASE_SECONDS)


def _fsm_target(method, source) -> str:
    """The state `method` (a django-fsm transition of Delivery) moves `source`
    to; raises if the state machine does not allow it. The batch paths below
    apply transitions with one statement per batch, so they check each
    (source -> target) move against the state machine once, here, instead of
    running the transition on a model instance per row."""
    meta = method._django_fsm
    if not meta.has_transition(source):
        raise ImproperlyConfigured(f"Delivery.{method.__name__} does not allow {source!r}")
    return meta.get_transition(source).target


# Claim: pending/retrying (due) and delivering (lease expired) -> delivering.
CLAIMABLE = (DeliveryState.PENDING, DeliveryState.RETRYING, DeliveryState.DELIVERING)
if {_fsm_target(Delivery.start, s) for s in CLAIMABLE} != {DeliveryState.DELIVERING}:
    raise ImproperlyConfigured("Delivery.start must lead to delivering")
# Record a success: delivering -> delivered.
if _fsm_target(Delivery.succeed, DeliveryState.DELIVERING) != DeliveryState.DELIVERED:
    raise ImproperlyConfigured("Delivery.succeed must lead to delivered")
# Hand back a lease unsent (the batch's send window closed): delivering -> pending.
RELEASED_STATE = _fsm_target(Delivery.release, DeliveryState.DELIVERING)


@dataclass(slots=True, eq=False)
class Claimed:
    """One leased delivery as the dispatcher carries it from claim to record:
    the columns it needs, not a model instance (the batch paths write by
    primary key; failures load their rows for the state machine)."""

    pk: int
    endpoint_id: int
    event_id: int
    organization_id: int
    event_type: str
    webhook_id: str
    replays: int
    lease: object  # the lease_expires_at this worker set (guards every write)
    body: bytes = b""
    endpoint: WebhookEndpoint | None = None
    state: str = DeliveryState.DELIVERING


CLAIM_COLUMNS = (
    "pk",
    "endpoint_id",
    "event_id",
    "organization_id",
    "event_type",
    "webhook_id",
    "replays",
    "event__event_type",
    "event__occurred_at",
    "event__sequence_key",
    "event__sequence",
    "event__payload",
)


def _claimed_from_rows(rows, lease_until) -> list[Claimed]:
    """Claimed deliveries from CLAIM_COLUMNS rows; each event's body is built
    once (an event going to several endpoints shares the bytes)."""
    bodies: dict[int, bytes] = {}
    claimed = []
    for pk, endpoint_id, event_id, org_id, etype, wid, replays, *event in rows:
        body = bodies.get(event_id)
        if body is None:
            body = bodies[event_id] = _body(event_id, *event)
        claimed.append(
            Claimed(
                pk=pk,
                endpoint_id=endpoint_id,
                event_id=event_id,
                organization_id=org_id,
                event_type=etype,
                webhook_id=wid,
                replays=replays,
                lease=lease_until,
                body=body,
            )
        )
    return claimed


def _claim_probes(now, lease_until) -> list[Claimed]:
    """One probe delivery per open breaker whose probe time has come (or whose
    half-open probe was lost with a crashed worker)."""
    claimed = []
    endpoints = WebhookEndpoint.objects.select_for_update(skip_locked=True).filter(
        enabled=True,
        breaker_state__in=[BreakerState.OPEN, BreakerState.HALF_OPEN],
        breaker_next_probe_at__lte=now,
    )
    for endpoint in endpoints:
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(endpoint=endpoint, state__in=[DeliveryState.PENDING, DeliveryState.RETRYING])
            .order_by("next_attempt_at", "id")
            .first()
        )
        if delivery is None:
            # Nothing to probe with: close the breaker; the next real
            # delivery tests the endpoint and reopens it if still down.
            close_breaker(endpoint, now=now)
            continue
        delivery.start(lease_until=lease_until, worker=worker_label())
        delivery.save(update_fields=["state", "lease_expires_at", "leased_by"])
        endpoint.breaker_state = BreakerState.HALF_OPEN
        endpoint.breaker_next_probe_at = now + timedelta(
            seconds=max(endpoint.breaker_probe_seconds, settings.BATON_WEBHOOK_LEASE_SECONDS)
        )
        endpoint.save(update_fields=["breaker_state", "breaker_next_probe_at", "updated_at"])
        claimed.append(delivery.pk)
    if not claimed:
        return []
    rows = Delivery.objects.filter(pk__in=claimed).values_list(*CLAIM_COLUMNS)
    return _claimed_from_rows(rows, lease_until)


def _due(now, limit, *, expired: bool = True) -> list[tuple]:
    """CLAIM_COLUMNS rows of due deliveries, locked with skip_locked (the
    delivery rows only): deliveries whose lease ran out (a crashed worker's;
    when `expired`), then pending/retrying ones whose time has come, oldest
    first. Two ordered index scans (the second on `delivery_due_idx`)
    instead of one OR over both, which sorted every waiting row per batch."""
    open_endpoints = dict(endpoint__enabled=True, endpoint__breaker_state=BreakerState.CLOSED)
    lock = dict(skip_locked=True, of=("self",))
    rows = []
    if expired:
        rows = list(
            Delivery.objects.filter(
                state=DeliveryState.DELIVERING, lease_expires_at__lt=now, **open_endpoints
            )
            .order_by("lease_expires_at", "id")
            .select_for_update(**lock)
            .values_list(*CLAIM_COLUMNS)[:limit]
        )
    if len(rows) < limit:
        rows += list(
            Delivery.objects.filter(
                state__in=DUE_STATES, next_attempt_at__lte=now, **open_endpoints
            )
            .order_by("next_attempt_at", "id")
            .select_for_update(**lock)
            .values_list(*CLAIM_COLUMNS)[: limit - len(rows)]
        )
    return rows


RECHECK_SECONDS = 1.0  # how often a drain looks for breaker probes and lost leases


def claim_batch(limit: int = 100, *, recheck: bool = True) -> list[Claimed]:
    """Lease up to `limit` due deliveries; commits before returning, so no
    lock is held while sending. With `recheck` (the default; a drain does it
    at most once a second) it also takes breaker probes and deliveries whose
    lease ran out. Set-based: one locking read of what sending needs
    (delivery and event columns), one UPDATE for all of them, one read of
    their endpoints."""
    now = timezone.now()
    lease_until = _lease_until(now)
    with transaction.atomic():
        claimed = _claim_probes(now, lease_until) if recheck else []
        rows = _due(now, limit, expired=recheck)
        if rows:
            # start(): every row gets the same values (checked once against
            # the state machine above), so one UPDATE, not one per row.
            Delivery.objects.filter(pk__in=[row[0] for row in rows]).update(
                state=DeliveryState.DELIVERING,
                lease_expires_at=lease_until,
                leased_by=worker_label(),
            )
    claimed.extend(_claimed_from_rows(rows, lease_until))
    if not claimed:
        return []
    endpoints = {
        e.pk: e
        for e in WebhookEndpoint.objects.filter(pk__in={c.endpoint_id for c in claimed}).order_by()
    }
    for delivery in claimed:
        delivery.endpoint = endpoints[delivery.endpoint_id]
    return claimed


# --- sending -------------------------------------------------------------------


def _send_one(delivery, target, signer, url, transport=None) -> SendResult:
    headers = signer(delivery.webhook_id, delivery.body)
    return send_webhook(
        url=url, headers=headers, body=delivery.body, target=target, transport=transport
    )


_thread_transport = threading.local()


def _own_transport():
    """The calling sending thread's own connection pool. A sending thread
    sends one request at a time, so with a pool per thread no two threads
    contend for one pool's lock (a shared pool's lock was the largest cost
    in the dispatcher's profile at 16 threads). Re-created after a fork."""
    pid = os.getpid()
    if getattr(_thread_transport, "pid", None) != pid:
        _thread_transport.transport = new_transport(max_connections=20)
        _thread_transport.pid = pid
    return _thread_transport.transport


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple | None = None


def _send_pool(concurrency: int) -> ThreadPoolExecutor:
    """The process-wide sending threads (re-created after a fork or when the
    concurrency changes): starting threads per batch cost more than sending."""
    global _pool, _pool_key
    key = (os.getpid(), concurrency)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == os.getpid():
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook-send")
            _pool_key = key
        return _pool


def send_window_seconds() -> float:
    """How long after its claim a batch may still start sends. A send that
    starts must finish (connect + write + read, each up to the timeout)
    before the lease runs out, or another worker reclaims the delivery and a
    slow partner gets it twice; deliveries not started in time are released
    unsent (`Delivery.release`) and claimed again by the next batch."""
    lease = settings.BATON_WEBHOOK_LEASE_SECONDS
    return max(lease / 2, lease - 2 * TIMEOUT_SECONDS - 5)


def _send_queue(work: deque, results: dict, transport=None, start_by=None) -> None:
    """One sending thread: take deliveries until none are left (work
    stealing: a slow partner holds up one thread, not a share of the batch).
    Past `start_by` (monotonic) it leaves the rest unsent, without a result."""
    transport = transport or _own_transport()
    while True:
        if start_by is not None and time.monotonic() > start_by:
            return
        try:
            delivery, target, signer, url = work.popleft()
        except IndexError:
            return
        try:
            results[delivery.pk] = _send_one(delivery, target, signer, url, transport)
        except Exception as exc:  # send_webhook never raises; signing might
            logger.exception("could not send delivery %s", delivery.pk)
            results[delivery.pk] = SendResult(
                started_at=timezone.now(), error_class="send_error", error=repr(exc)[:300]
            )


class _Pending:
    """A batch on the wire: its results dict fills as sends finish."""

    __slots__ = ("futures", "results")

    def __init__(self, results, futures):
        self.results = results
        self.futures = futures


def submit_batch(batch: list[Claimed], *, concurrency: int | None = None) -> _Pending:
    """Start sending each claimed delivery once (no transaction is open).

    Per endpoint and batch, not per delivery: the SSRF check (resolve once,
    then connect to the checked addresses), the signing secrets and their
    prepared signers. `collect()` waits for the results."""
    start_by = time.monotonic() + send_window_seconds()
    prepared: dict[int, tuple] = {}
    results: dict = {}
    work: deque = deque()
    for delivery in batch:
        endpoint = delivery.endpoint
        entry = prepared.get(endpoint.pk)
        if entry is None:
            try:
                target = check_url(endpoint.url, for_send=True)
            except UnsafeURLError as exc:
                target = exc
            entry = prepared[endpoint.pk] = (
                target,
                signer_for(endpoint.signing_secrets()),
                endpoint.url,
            )
        target, signer, url = entry
        if isinstance(target, UnsafeURLError):
            error_class = "dns_error" if isinstance(target, HostResolutionError) else "unsafe_url"
            results[delivery.pk] = SendResult(
                started_at=timezone.now(), error_class=error_class, error=target.message
            )
        else:
            work.append((delivery, target, signer, url))
    concurrency = concurrency or settings.BATON_WEBHOOK_SEND_CONCURRENCY
    threads = min(concurrency, len(work))
    if threads <= 1:
        _send_queue(work, results, http_transport(), start_by)
        return _Pending(results, [])
    pool = _send_pool(concurrency)
    return _Pending(
        results,
        [pool.submit(_send_queue, work, results, None, start_by) for _ in range(threads)],
    )


def collect(pending: _Pending) -> dict[int, SendResult]:
    for future in pending.futures:
        future.result()
    return pending.results


def send_batch(batch: list[Claimed], *, concurrency: int | None = None) -> dict[int, SendResult]:
    """Send each claimed delivery once and wait for all (no transaction is open)."""
    return collect(submit_batch(batch, concurrency=concurrency))


# --- recording -----------------------------------------------------------------


def _jittered(seconds: float) -> float:
    if seconds <= 0:
        return 0.0
    return seconds * random.uniform(0.9, 1.2)


def next_retry_delay(endpoint: WebhookEndpoint, attempt_number: int, retry_after=None):
    """Seconds until attempt `attempt_number + 1`, or None when exhausted."""
    schedule = endpoint.schedule()
    if attempt_number >= len(schedule):
        return None
    delay = _jittered(schedule[attempt_number])
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


ATTEMPT_COLUMNS = (
    "delivery_id",
    "number",
    "started_at",
    "status_code",
    "latency_ms",
    "error_class",
    "response_snippet",
    "succeeded",
)


def _insert_attempts(rows: list[tuple]) -> None:
    """Append Attempt rows (ATTEMPT_COLUMNS tuples) in bulk: the table is
    append-only and the dispatcher writes hundreds per batch, where
    `bulk_create`'s per-field preparation of model instances cost more than
    the database. PostgreSQL: one COPY; others: one executemany INSERT."""
    if not rows:
        return
    conn = connections[Attempt.objects.db]
    table = conn.ops.quote_name(Attempt._meta.db_table)
    columns = ", ".join(conn.ops.quote_name(c) for c in ATTEMPT_COLUMNS)
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapt = conn.ops.adapt_datetimefield_value
        placeholders = ", ".join(["%s"] * len(ATTEMPT_COLUMNS))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",  # noqa: S608 (fixed names)
            [(r[0], r[1], adapt(r[2]), *r[3:]) for r in rows],
        )


def record_results(batch: list[Claimed], results: dict[int, SendResult]) -> dict:
    """Write attempts and outcomes for a sent batch in one short transaction.

    Per batch: one read of (state, lease, attempt count), one bulk write of
    the attempts (`_insert_attempts`), one UPDATE per status code for the successes
    (guarded by state and lease). Failures, rare and each with its own
    backoff, go through the state machine on locked model instances. An
    outcome is applied only while the row is still ours (`delivering` under
    the lease we set); otherwise another worker reclaimed it and its result
    wins, but our attempt is still recorded."""
    stats = defaultdict(int)
    now = timezone.now()
    endpoints = {d.endpoint_id: d.endpoint for d in batch}
    with transaction.atomic():
        # Read (state, lease, attempt count) without locking or loading whole
        # rows: the writes below are guarded by the state and lease we hold,
        # so a row reclaimed by another worker is never overwritten.
        current = {
            pk: (state, lease, count)
            for pk, state, lease, count in Delivery.objects.filter(
                pk__in=[d.pk for d in batch]
            ).values_list("pk", "state", "lease_expires_at", "attempt_count")
        }
        attempts = []
        successes: dict[tuple, list[int]] = defaultdict(list)
        failures: dict[int, tuple[Claimed, SendResult]] = {}
        outcomes: dict[int, list[bool]] = defaultdict(list)
        recovered = set()
        unsent: dict = defaultdict(list)  # lease -> ids left unsent past the send window
        for claimed in batch:
            row = current.get(claimed.pk)
            if row is None:
                continue
            result = results.get(claimed.pk)
            if result is None:
                unsent[claimed.lease].append(claimed.pk)
                continue
            db_state, db_lease, count = row
            ok = result.ok
            attempts.append(
                (
                    claimed.pk,
                    count + 1,
                    result.started_at,
                    result.status_code,
                    result.latency_ms,
                    result.error_class,
                    result.snippet[:500],
                    ok,
                )
            )
            if db_state != DeliveryState.DELIVERING or db_lease != claimed.lease:
                stats["stale"] += 1  # another worker reclaimed it after our lease ran out
                continue
            if ok:
                successes[(result.status_code, claimed.lease)].append(claimed.pk)
                stats["delivered"] += 1
                if claimed.replays:
                    recovered.add((claimed.endpoint_id, claimed.event_type))
            else:
                failures[claimed.pk] = (claimed, result)
            outcomes[claimed.endpoint_id].append(ok)
        _insert_attempts(attempts)
        for (status_code, lease), ids in successes.items():
            # succeed(), checked once against the state machine above
            Delivery.objects.filter(
                pk__in=ids, state=DeliveryState.DELIVERING, lease_expires_at=lease
            ).update(
                state=DeliveryState.DELIVERED,
                attempt_count=F("attempt_count") + 1,
                last_status_code=status_code,
                last_error="",
                lease_expires_at=None,
                leased_by="",
                delivered_at=now,
            )
        for lease, ids in unsent.items():
            # release(), checked once against the state machine above; a row
            # another worker reclaimed meanwhile is not ours to release.
            stats["released"] += Delivery.objects.filter(
                pk__in=ids, state=DeliveryState.DELIVERING, lease_expires_at=lease
            ).update(state=RELEASED_STATE, lease_expires_at=None, leased_by="")
        dead, gone = _record_failures(failures, endpoints, now, stats)
        for endpoint_id, oks in outcomes.items():
            endpoint = endpoints[endpoint_id]
            if endpoint_id in gone:
                continue
            healthy = endpoint.breaker_state == BreakerState.CLOSED
            if all(oks) and healthy and endpoint.consecutive_failures == 0:
                continue  # nothing to change: skip locking the endpoint row
            apply_breaker(endpoint_id=endpoint_id, outcomes=oks, now=now)
        for endpoint_id in gone:
            disable_gone_endpoint(endpoint_id=endpoint_id, now=now)
        raise_dead(dead)
        resolve_recovered_dead(recovered)
    return dict(stats)


OUTCOME_FIELDS = [
    "state",
    "attempt_count",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "lease_expires_at",
    "leased_by",
    "delivered_at",
    "dead_at",
]


def _record_failures(failures: dict, endpoints: dict, now, stats) -> tuple[list, set]:
    """Failed sends: lock their rows, keep those still delivering under our
    lease, run fail()/die()/disable() on them (django-fsm checks each) and
    write them with bulk_update. Returns (dead deliveries, gone endpoint ids)."""
    dead, gone, changed = [], set(), []
    if not failures:
        return dead, gone
    rows = Delivery.objects.select_for_update().filter(
        pk__in=list(failures), state=DeliveryState.DELIVERING
    )
    for delivery in rows:
        claimed, result = failures[delivery.pk]
        if delivery.lease_expires_at != claimed.lease:
            continue
        delivery.endpoint = endpoints[delivery.endpoint_id]
        if result.error_class == "gone":
            delivery.disable(reason=result.error)
            gone.add(delivery.endpoint_id)
            stats["disabled"] += 1
        else:
            delay = next_retry_delay(
                delivery.endpoint, delivery.attempt_count + 1, retry_after=result.retry_after
            )
            error = result.error or result.error_class
            if delay is None:
                delivery.die(status_code=result.status_code, error=error, at=now)
                dead.append(delivery)
                stats["dead"] += 1
            else:
                delivery.fail(
                    status_code=result.status_code,
                    error=error,
                    next_at=now + timedelta(seconds=delay),
                )
                stats["retrying"] += 1
        changed.append(delivery)
    Delivery.objects.bulk_update(changed, OUTCOME_FIELDS, batch_size=500)
    return dead, gone


# --- the drain loop --------------------------------------------------------------


def drain(*, max_seconds: float = 50.0, batch_size: int = 100, concurrency=None) -> dict:
    """Claim, send and record batches until nothing is due or time is up.

    Pipelined: the next batch is claimed while the current one is on the
    wire, then the current one is recorded, so the database work of one
    batch overlaps the HTTP work of another. Each batch is still claimed,
    sent and recorded in that order, in its own short transactions. Breaker
    probes and lost leases are looked for on the first claim, at most once a
    second after that, and before stopping."""
    totals = defaultdict(int)
    deadline = time.monotonic() + max_seconds
    _local.draining = True
    in_flight = None  # (batch, pending results)
    checked_at = None
    try:
        while True:
            batch = []
            if time.monotonic() < deadline:
                recheck = checked_at is None or time.monotonic() - checked_at >= RECHECK_SECONDS
                if recheck:
                    checked_at = time.monotonic()
                batch = claim_batch(batch_size, recheck=recheck)
                if not batch and not recheck:  # look for probes and lost leases before stopping
                    checked_at = time.monotonic()
                    batch = claim_batch(batch_size)
            sending = (batch, submit_batch(batch, concurrency=concurrency)) if batch else None
            previous, in_flight = in_flight, sending
            if previous is not None:
                done, pending = previous
                for key, value in record_results(done, collect(pending)).items():
                    totals[key] += value
                totals["batches"] += 1
            if in_flight is None and previous is None:
                break  # nothing was due even after the last batch was recorded
    finally:
        if in_flight is not None:  # an error left a batch on the wire: record it
            done, pending = in_flight
            try:
                record_results(done, collect(pending))
            except Exception:
                logger.exception("could not record a sent batch; its lease expiry retries it")
        _local.draining = False
    return dict(totals)
