"""Benchmark: drain outbox deliveries into a local HTTP sink.

Enqueues N deliveries (N outbox events x 1 endpoint; fan-out not timed) and
measures in the same run, against the same sink (`FastSink`: its own
process on 127.0.0.1, one asyncio loop, HTTP/1.1 keep-alive, a few tens of
microseconds of CPU per request, so the sink is not what is measured):
- baseline: a plain `httpx.Client` loop POSTing the same bodies one after
  another (on min(N, 20,000) bodies; its rate is what counts);
- Baton: W dispatcher processes (Q_WORKERS), each running
  `integrations.dispatch.drain` (claim with skip_locked, sign, send with T
  threads, record attempts) until every delivery is delivered.
Prints deliveries/s, the ratio to the baseline, CPU per delivery of the
dispatchers and of the sink, and the load average. Targets: >= 1,000/s and
>= 0.5 of the plain loop.

Full size on PostgreSQL (its own database; migrated here):
    psql -h 127.0.0.1 -U postgres -c 'create database baton_bench_drain'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_bench_drain .venv/bin/python bench/outbox_drain.py
CI: .venv/bin/python bench/outbox_drain.py --quick   (SQLite in /tmp, 3,000 deliveries, 1 worker)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3,000 deliveries (SQLite by default)")
    p.add_argument("--deliveries", type=int, default=None, help="default 100,000 (3,000 quick)")
    p.add_argument("--workers", type=int, default=None, help="dispatcher processes (Q_WORKERS)")
    p.add_argument(
        "--threads",
        type=int,
        default=4,
        help="sending threads per dispatcher (default 4: a local sink answers in\n"
        "microseconds, so more threads only contend for the GIL)",
    )
    p.add_argument("--batch", type=int, default=200, help="deliveries claimed per batch")
    p.add_argument("--min-rate", type=float, default=1000.0)
    p.add_argument("--min-ratio", type=float, default=0.5)
    return p.parse_args()


ARGS = parse_args()
if ARGS.quick and "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:////tmp/baton_bench_outbox_quick.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"/tmp/baton_bench_outbox_quick.db{suffix}").unlink(missing_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_ENV", "test")  # loopback http sink allowed
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Forked dispatchers must not share the parent's pooled sockets.
os.environ.setdefault("DB_POOL", "false")

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from integrations import dispatch  # noqa: E402
from integrations.delivery_sink import FastSink  # noqa: E402
from integrations.models import Attempt, Delivery, DeliveryState, OutboxEvent  # noqa: E402
from integrations.services.webhooks import webhook_endpoint_create  # noqa: E402
from programs.actors import Actor  # noqa: E402
from programs.models import Organization  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)


def run_sink(port_queue, stop_event):
    sink = FastSink(record=False).start()
    port_queue.put(sink.port)
    stop_event.wait()
    port_queue.put((sink.count, time.process_time()))
    sink.stop()


def dispatcher(_index):
    connections.close_all()
    cpu0 = time.process_time()
    total = 0
    idle_rounds = 0
    while idle_rounds < 3:
        result = dispatch.drain(max_seconds=3600, batch_size=ARGS.batch, concurrency=ARGS.threads)
        done = sum(v for k, v in result.items() if k != "batches")
        total += done
        idle_rounds = idle_rounds + 1 if not done else 0
        if not done:
            time.sleep(0.05)
    connections.close_all()
    return total, time.process_time() - cpu0


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    n = ARGS.deliveries or (3_000 if ARGS.quick else 100_000)
    workers = ARGS.workers or (1 if ARGS.quick else settings.Q_CLUSTER["workers"])
    vendor = connection.vendor
    print(
        f"database: {vendor}; deliveries: {n:,}; dispatcher processes: {workers}; "
        f"sending threads per process: {ARGS.threads}; batch: {ARGS.batch}"
    )
    print(f"load average at start: {load_average()}")
    call_command("migrate", verbosity=0)

    ctx = multiprocessing.get_context("fork")
    port_queue, stop_event = ctx.Queue(), ctx.Event()
    sink_process = ctx.Process(target=run_sink, args=(port_queue, stop_event), daemon=True)
    sink_process.start()
    port = port_queue.get(timeout=10)
    url = f"http://127.0.0.1:{port}/hook"

    # seed (not timed)
    t0 = time.perf_counter()
    org = Organization.objects.create(slug=f"bench-outbox-{time.time_ns()}", name="Bench")
    endpoint, _secret = webhook_endpoint_create(
        organization=org,
        partner_name=f"bench-{time.time_ns()}",
        url=url,
        actor=Actor.system("bench"),
        breaker_threshold=10_000,
    )
    now = timezone.now()
    OutboxEvent.objects.bulk_create(
        (
            OutboxEvent(
                organization=org,
                event_type="programs.exception.opened",
                payload={"exception_id": i, "state": "open", "kind": "manual"},
                created_at=now,
                occurred_at=now,
            )
            for i in range(n)
        ),
        batch_size=5000,
    )
    events, created = dispatch.sweep_outbox(batch=5000, max_batches=10_000)
    assert created >= n, (events, created)
    if vendor == "postgresql":
        # Fresh planner statistics, as autovacuum would have them a minute
        # later: with stale ones (the table "has no waiting rows") the claim
        # may plan a sort of every waiting row instead of delivery_due_idx.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Delivery._meta.db_table}")
    print(f"seeded {created:,} deliveries in {time.perf_counter() - t0:.1f} s")

    # baseline: a plain httpx loop posting the same bodies
    sample = list(OutboxEvent.objects.filter(organization=org).order_by("id")[: min(n, 20_000)])
    bodies = [dispatch.event_body(e) for e in sample]
    with httpx.Client(trust_env=False) as client:
        for body in bodies[:200]:  # warm-up
            client.post(url, content=body, headers={"content-type": "application/json"})
        t0 = time.perf_counter()
        for body in bodies:
            client.post(url, content=body, headers={"content-type": "application/json"})
        baseline_s = time.perf_counter() - t0
    baseline_rate = len(bodies) / baseline_s
    print(
        f"baseline plain httpx loop: {len(bodies):,} POSTs in {baseline_s:.2f} s "
        f"= {baseline_rate:,.0f}/s"
    )

    # Baton's dispatcher
    connections.close_all()
    t0 = time.perf_counter()
    with ctx.Pool(workers) as pool:
        per_worker = pool.map(dispatcher, range(workers))
    drain_s = time.perf_counter() - t0
    dispatcher_cpu = sum(cpu for _done, cpu in per_worker)
    delivered = Delivery.objects.filter(endpoint=endpoint, state=DeliveryState.DELIVERED).count()
    attempts = Attempt.objects.filter(delivery__endpoint=endpoint).count()
    rate = delivered / drain_s
    ratio = rate / baseline_rate
    stop_event.set()
    sink_requests, sink_cpu = port_queue.get(timeout=10)
    print(
        f"Baton drain: {delivered:,}/{n:,} delivered ({attempts:,} attempts) "
        f"in {drain_s:.2f} s = {rate:,.0f} deliveries/s"
    )
    print(
        f"CPU per delivery: dispatchers {dispatcher_cpu / max(delivered, 1) * 1e6:,.0f} us; "
        f"sink {sink_cpu / max(sink_requests, 1) * 1e6:,.0f} us per request "
        f"({sink_requests:,} requests incl. baseline)"
    )
    print(f"ratio to plain loop: {ratio:.2f}")
    print(f"load average at end: {load_average()}")
    ok = delivered == n and rate >= ARGS.min_rate and ratio >= ARGS.min_ratio
    if ARGS.quick:
        # CI runs the quick size to prove the benchmark works; figures come from full runs.
        ok = delivered == n
    print(
        "PASS" if ok else "FAIL",
        f"(targets: >= {ARGS.min_rate:,.0f}/s and >= {ARGS.min_ratio:.0%} of the plain loop)",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
