"""Benchmark: schedule and dispatch messages through the console and webhook connectors.

Schedules N messages (one per participant, across several timezones, quiet
hours on, daily cap on) through `messages_schedule_many` (2,000 requests per
call), then dispatches them with
`messages_dispatch_due`: half for an organization on the console connector,
half for one whose webhook connector posts to a local sink (a separate
process on 127.0.0.1, HTTP/1.1 keep-alive). Reports messages/s scheduled
and dispatched, and the ratio against baselines measured in the same run:
- scheduling vs a plain `Message.objects.create` loop (same rows, no rules,
  no audit or outbox);
- console dispatch vs a plain insert loop of one attempt row per message;
- webhook dispatch vs a plain httpx loop posting the same bodies, one by one.

Full size on PostgreSQL (its own database; migrated here):
    psql -h 127.0.0.1 -U postgres -c 'create database baton_bench_messaging'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_bench_messaging \
        .venv/bin/python bench/messaging.py
CI: .venv/bin/python bench/messaging.py --quick   (SQLite in /tmp, 2,000 messages)
--profile prints (and saves to /tmp/bench_messaging_*.pstats) a cProfile of
scheduling and of each dispatch; OVERLAP=0 turns off sending one batch while
the previous one is recorded (BATON_MESSAGING_OVERLAP_SENDS) for an A/B run.

Target: dispatch >= 1,000 messages/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2,000 messages (SQLite by default)")
    p.add_argument("--messages", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--target", type=float, default=1000.0, help="dispatch messages/s")
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile scheduling and dispatch (project functions by cumulative time, then the top 15 by own time)",
    )
    return p.parse_args()


ARGS = parse_args()
if ARGS.quick and "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:////tmp/baton_bench_messaging_quick.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"/tmp/baton_bench_messaging_quick.db{suffix}").unlink(missing_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DB_POOL_MAX_SIZE", "40")

import django  # noqa: E402

django.setup()

import json  # noqa: E402
import multiprocessing  # noqa: E402
from datetime import timedelta  # noqa: E402

import httpx  # noqa: E402
import time_machine  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import F  # noqa: E402
from django.utils import timezone  # noqa: E402

TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Asia/Kolkata",
)


def _serve(port_queue):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"vendor_message_id":"sink"}'
            # one write per response: split header/body writes stall on Nagle + delayed ACK
            self.wfile.write(
                b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def start_sink():
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    process = ctx.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=30)}/messages"


def setup_world(sink_url):
    from integrations.signing import generate_secret
    from messaging.management.commands.load_templates import load_templates
    from messaging.models import ChannelConnector
    from programs.actors import Actor
    from programs.definitions import load_definition_text
    from programs.services import organization_create, program_activate, program_load_definition

    actor = Actor.system("bench")
    text = (ROOT / "programs" / "fixtures" / "dpp.yaml").read_text()
    programs = []
    for slug in ("console-org", "webhook-org"):
        org = organization_create(slug=slug, name=slug.title(), actor=actor)
        version, _ = program_load_definition(
            organization=org, document=load_definition_text(text), actor=actor
        )
        program = program_activate(program_id=version.program_id, actor=actor)
        load_templates(program=program, actor=actor)
        programs.append((org, program))
    ChannelConnector.objects.create(
        organization=programs[1][0],
        slug="sink",
        name="Local sink",
        kind="webhook",
        url=sink_url,
        secret=generate_secret(),
        is_default=True,
    )
    return programs


def schedule_all(programs, n, chunk=2_000):
    """Schedule through `messages_schedule_many`, `chunk` requests per call
    (one transaction each), with every rule on: dedup, opt-outs, quiet
    hours, the daily cap and its per-participant lock."""
    from messaging.services import ScheduleRequest, messages_schedule_many
    from programs.actors import Actor

    actor = Actor.system("bench")
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        requests = []
        for i in range(start, min(n, start + chunk)):
            org, program = programs[i % 2]
            requests.append(
                ScheduleRequest(
                    organization=org,
                    program=program,
                    enrollment_id=i + 1,
                    participant_ref=f"P-{i:07d}",
                    participant_timezone=TIMEZONES[i % len(TIMEZONES)],
                    locale="en",
                    template_key="invitation",
                    channel="sms",
                    step_instance_id=i + 1,
                    step_title="Invitation message",
                )
            )
        messages_schedule_many(requests=requests, actor=actor)
    return time.perf_counter() - t0


def baseline_inserts(programs, n):
    """Plain ORM insert loop of the same rows, no rules, no audit (rolled back)."""
    from messaging.models import Message, MessageTemplate

    org, program = programs[0]
    template = MessageTemplate.objects.filter(program=program, key="invitation").first()
    t0 = time.perf_counter()
    with transaction.atomic():
        for i in range(n):
            Message.objects.create(
                organization=org,
                program=program,
                enrollment_id=10_000_000 + i,
                participant_ref=f"B-{i:07d}",
                template=template,
                template_key="baseline",
                template_version=1,
                channel="sms",
                scheduled_for=timezone.now() + timedelta(days=3650),
            )
        elapsed = time.perf_counter() - t0
        transaction.set_rollback(True)
    return elapsed


def baseline_attempt_inserts(n):
    """One plain insert per message (what the console connector's record costs at minimum)."""
    from messaging.models import DeliveryAttempt, Message

    message_id = Message.objects.values_list("pk", flat=True).first()
    t0 = time.perf_counter()
    with transaction.atomic():
        for i in range(n):
            DeliveryAttempt.objects.create(
                message_id=message_id, connector_kind="baseline", number=i, outcome="sent"
            )
        elapsed = time.perf_counter() - t0
        transaction.set_rollback(True)
    return elapsed


def baseline_httpx(url, n):
    body = json.dumps({"type": "message.send", "message_id": 1, "variables": {}}).encode()
    with httpx.Client(timeout=15) as client:
        t0 = time.perf_counter()
        for _ in range(n):
            client.post(url, content=body, headers={"content-type": "application/json"})
        return time.perf_counter() - t0


def profiled(label, func, *args):
    """Run func(*args), under cProfile with --profile (prints the top 30 by own time)."""
    if not ARGS.profile:
        return func(*args)
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    result = profiler.runcall(func, *args)
    dump = f"/tmp/bench_messaging_{label.replace(' ', '_')}.pstats"
    profiler.dump_stats(dump)
    print(f"--- profile: {label} (saved to {dump}) ---")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(
        r"(messaging|integrations|participants|programs)/", 30
    )
    stats.sort_stats("tottime").print_stats(15)
    return result


def dispatch_for(org, batch_size):
    """Dispatch only `org`'s messages: the other org's stay scheduled meanwhile."""
    from messaging.models import Message, MessageState
    from messaging.services import messages_dispatch_due

    pending = Message.objects.filter(organization=org, state=MessageState.SCHEDULED).count()
    t0 = time.perf_counter()
    stats = messages_dispatch_due(batch_size=batch_size)
    return pending, time.perf_counter() - t0, stats


def main():
    n = ARGS.messages or (2_000 if ARGS.quick else 100_000)
    settings.BATON_MESSAGING_DISPATCH_ON_COMMIT = False
    settings.BATON_MESSAGING_DAILY_CAP = 3  # on: the cap, its counts and its lock are measured
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = True
    settings.BATON_MESSAGING_OVERLAP_SENDS = os.environ.get("OVERLAP", "1") == "1"
    call_command("migrate", verbosity=0)
    from messaging.models import Message, MessageState

    if Message.objects.exists():
        sys.exit("the benchmark database is not empty; drop and re-create it")
    sink, url = start_sink()
    try:
        programs = setup_world(url)
        print(f"database: {connection.vendor}; messages: {n:,}; batch size {ARGS.batch_size}")

        base_n = min(n, 5_000)
        base_insert = baseline_inserts(programs, base_n)
        sched = profiled("schedule", schedule_all, programs, n)
        sched_rate, base_rate = n / sched, base_n / base_insert
        print(
            f"schedule: {sched_rate:,.0f} msg/s (service: dedup, opt-outs, quiet hours, cap, "
            f"audit, outbox); baseline plain insert {base_rate:,.0f} rows/s; "
            f"ratio {sched_rate / base_rate:.2f}"
        )
        deferred = Message.objects.filter(scheduled_for__gt=timezone.now()).count()
        print(f"  {deferred:,} of {n:,} moved out of quiet hours")

        # Everything is due tomorrow; dispatch each organization in turn.
        with time_machine.travel(timezone.now() + timedelta(days=1), tick=True):
            # Dispatch picks any due message, so hold one org's messages back by
            # running them in sequence: cancel nothing, just order by organization.
            results = {}
            console_org, webhook_org = programs[0][0], programs[1][0]
            for label, org, other in (
                ("console", console_org, webhook_org),
                ("webhook", webhook_org, console_org),
            ):
                # park the other org's messages a year ahead for this run (one UPDATE each way)
                parked = Message.objects.filter(organization=other, state=MessageState.SCHEDULED)
                year = timedelta(days=365)
                parked.update(scheduled_for=F("scheduled_for") + year)
                pending, elapsed, stats = profiled(
                    f"dispatch {label}", dispatch_for, org, ARGS.batch_size
                )
                Message.objects.filter(organization=other, state=MessageState.SCHEDULED).update(
                    scheduled_for=F("scheduled_for") - year
                )
                results[label] = (pending, elapsed, stats)

        base_attempts = baseline_attempt_inserts(base_n)
        base_http = baseline_httpx(url, min(n // 2, 5_000))
        total_msgs = sum(r[0] for r in results.values())
        total_time = sum(r[1] for r in results.values())
        for label, (pending, elapsed, stats) in results.items():
            rate = pending / elapsed
            if label == "console":
                base = base_n / base_attempts
                base_label = "plain attempt-row insert loop"
            else:
                base = min(n // 2, 5_000) / base_http
                base_label = "plain httpx loop"
            print(
                f"dispatch {label}: {pending:,} in {elapsed:.1f}s = {rate:,.0f} msg/s "
                f"({dict(stats)}); baseline {base_label} {base:,.0f}/s; ratio {rate / base:.2f}"
            )
        overall = total_msgs / total_time
        states = dict(Message.objects.values_list("state").annotate(c=django.db.models.Count("pk")))
        print(f"final states: {states}")
        verdict = "PASS" if overall >= ARGS.target else "BELOW TARGET"
        print(f"dispatch overall: {overall:,.0f} msg/s (target >= {ARGS.target:,.0f}): {verdict}")
    finally:
        sink.terminate()


if __name__ == "__main__":
    main()
