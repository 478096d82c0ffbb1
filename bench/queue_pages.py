"""Benchmark: server-side rendering of the console pages at queue scale.

Seeds (set-based) N exception-queue items and M audit rows, then renders
in-process with Django's test Client: my queue, unassigned, a filtered list,
an item detail, the program dashboard, the admin changelist and the timeline
of a busy participant. Prints p50/p95 and the query count of each page, and
the ratio of p95 against a baseline measured in the same run on the small
starting data set (before the bulk seed).

Full size on PostgreSQL (its own database; it is migrated here):
    psql -h 127.0.0.1 -U postgres -c 'create database baton_bench_console'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_bench_console \
        .venv/bin/python bench/queue_pages.py
CI: .venv/bin/python bench/queue_pages.py --quick   (SQLite in /tmp, small sizes)

Target: p95 <= 150 ms per page at 1,000,000 items / 5,000,000 audit rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes for CI (SQLite by default)")
    p.add_argument("--exceptions", type=int, default=None)
    p.add_argument("--audits", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None, help="renders per page")
    p.add_argument("--target-ms", type=float, default=150.0)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="measure an already seeded bench database (no baseline: ratio shown as n/a)",
    )
    return p.parse_args()


ARGS = parse_args()
if ARGS.quick and "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:////tmp/baton_bench_console_quick.db"
    Path("/tmp/baton_bench_console_quick.db").unlink(missing_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

N_EXC = ARGS.exceptions or (3_000 if ARGS.quick else 1_000_000)
N_AUDIT = ARGS.audits or (15_000 if ARGS.quick else 5_000_000)
REPEAT = ARGS.repeat or (5 if ARGS.quick else 30)
PG = connection.vendor == "postgresql"


def series(n: int) -> str:
    """A row source g = 1..n on either database."""
    if PG:
        return f"generate_series(1::bigint, {int(n)}::bigint) AS s(g)"
    return (
        f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {int(n)}) "
        "SELECT g FROM s) AS s"
    )


def ts(expr_seconds: str) -> str:
    """now() minus a number of seconds, as a timestamp expression."""
    if PG:
        return f"(now() - ({expr_seconds}) * interval '1 second')"
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', (-({expr_seconds})) || ' seconds')"


def seed_base():
    import yaml

    from participants.services import enrollment_open, participant_upsert
    from programs.actors import Actor
    from programs.models import Organization
    from programs.services import (
        exception_claim,
        exception_raise,
        membership_grant,
        organization_create,
        program_activate,
        program_load_definition,
    )
    from programs.tests.factories import UserFactory

    actor = Actor.system("bench")
    org = organization_create(slug="bench", name="Bench Health", actor=actor)
    other = organization_create(slug="bench-other", name="Other Health", actor=actor)
    doc = yaml.safe_load((ROOT / "programs" / "fixtures" / "dpp.yaml").read_text())
    version, _ = program_load_definition(organization=org, document=doc, actor=actor)
    program = program_activate(program_id=version.program_id, actor=actor)
    users = {}
    for role in ("coordinator", "lead"):
        user = UserFactory(username=f"bench-{role}")
        membership_grant(user=user, organization=org, role=role, actor=actor)
        users[role] = user
    participant, _ = participant_upsert(organization=org, external_ref="BUSY-1", actor=actor)
    busy, _ = enrollment_open(participant=participant, program=program, actor=actor)
    item, _ = exception_raise(
        organization=org,
        program=program,
        kind="manual",
        title="Busy participant item",
        dedup_key="busy",
        subject=busy,
        actor=actor,
    )
    exception_claim(exception_id=item.pk, actor=users["coordinator"])
    for i in range(20):
        exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title=f"Seed {i}",
            dedup_key=f"seed{i}",
            severity=("low", "high")[i % 2],
            actor=actor,
        )
    assert Organization.objects.count() >= 2
    return {
        "org": org,
        "other": other,
        "program": program,
        "users": users,
        "busy": busy,
        "item": item,
    }


def seed_bulk(base):
    """N exceptions (90% resolved, 5% open, 3% claimed by the coordinator, 2%
    snoozed; 10% in another organization) and M audit rows, set-based."""
    org, other, program = base["org"].pk, base["other"].pk, base["program"].pk
    coord = base["users"]["coordinator"].pk
    busy = base["busy"].pk
    now = "now()" if PG else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    state = (
        "CASE WHEN g % 100 < 90 THEN 'resolved' WHEN g % 100 < 95 THEN 'open' "
        "WHEN g % 100 < 98 THEN 'claimed' ELSE 'snoozed' END"
    )
    sev = "CASE g % 10 WHEN 0 THEN 'critical' WHEN 1 THEN 'high' WHEN 2 THEN 'high' WHEN 3 THEN 'low' ELSE 'medium' END"
    prio = "CASE g % 10 WHEN 0 THEN 4 WHEN 1 THEN 3 WHEN 2 THEN 3 WHEN 3 THEN 1 ELSE 2 END"
    kind = "CASE g % 3 WHEN 0 THEN 'manual' WHEN 1 THEN 'sla_breach' ELSE 'manual' END"
    age = "((g * 7919) % (365 * 86400))"
    with connection.cursor() as c:
        c.execute(
            f"""
            INSERT INTO programs_opsexception (organization_id, program_id, kind, severity,
              priority, title, detail, subject_type, subject_id, dedup_key, occurrences,
              first_seen_at, last_seen_at, due_by, state, assignee_id, snoozed_until,
              resolution_note, resolved_at, resolved_by, auto_resolved, context, updated_at)
            SELECT CASE WHEN g % 10 = 9 THEN {other} ELSE {org} END,
              CASE WHEN g % 10 = 9 THEN NULL ELSE {program} END,
              {kind}, {sev}, {prio}, 'Bench item ' || g, '',
              CASE WHEN g % 1000 = 0 THEN 'participants.enrollment' ELSE '' END,
              CASE WHEN g % 1000 = 0 THEN '{busy}' ELSE '' END,
              'bench:' || g, 1 + g % 5,
              {ts(age)}, {ts(age)}, {ts(age + " - 86400")},
              {state},
              CASE WHEN g % 100 >= 95 AND g % 100 < 98 AND g % 10 <> 9 THEN {coord} ELSE NULL END,
              CASE WHEN g % 100 >= 98 THEN {ts("-86400")} ELSE NULL END,
              '', CASE WHEN g % 100 < 90 THEN {ts(age + " / 2")} ELSE NULL END,
              '', false, '{{}}', {now}
            FROM {series(N_EXC)}
            """
        )
        c.execute("SELECT max(id) FROM programs_opsexception")
        max_id = c.fetchone()[0]
        c.execute(
            f"""
            INSERT INTO programs_auditevent (created_at, organization_id, actor_kind, actor_id,
              actor_label, action, object_type, object_id, from_state, to_state, reason,
              request_id, ip_address, user_agent, metadata)
            SELECT {ts("((g * 104729) % (365 * 86400))")}, {org},
              CASE WHEN g % 10 = 0 THEN 'user' ELSE 'system' END, 'bench',
              CASE WHEN g % 10 = 0 THEN 'bench-coordinator' ELSE 'system:bench' END,
              CASE g % 4 WHEN 0 THEN 'exception.opened' WHEN 1 THEN 'exception.claim'
                WHEN 2 THEN 'exception.resolved' ELSE 'step.completed' END,
              CASE WHEN g % 2500 = 0 THEN 'participants.enrollment' ELSE 'programs.opsexception' END,
              CASE WHEN g % 2500 = 0 THEN '{busy}' ELSE CAST(1 + g % {max_id} AS TEXT) END,
              '', '', '', '', NULL, '', '{{}}'
            FROM {series(N_AUDIT)}
            """
        )
        if PG:
            # A bulk-loaded table has no visibility map until (auto)vacuum
            # visits it; production tables are in that steady state, and
            # the console's index-only scans depend on it. VACUUM runs outside
            # a transaction: the bench connection is in autocommit mode.
            c.execute("VACUUM ANALYZE programs_opsexception")
            c.execute("VACUUM ANALYZE programs_auditevent")
        c.execute("ANALYZE")


def load_base():
    from django.contrib.auth import get_user_model

    from participants.models import Enrollment
    from programs.models import OpsException, Organization, Program

    org = Organization.objects.get(slug="bench")
    User = get_user_model()
    return {
        "org": org,
        "other": Organization.objects.get(slug="bench-other"),
        "program": Program.objects.get(organization=org),
        "users": {r: User.objects.get(username=f"bench-{r}") for r in ("coordinator", "lead")},
        "busy": Enrollment.objects.get(participant__external_ref="BUSY-1"),
        "item": OpsException.objects.get(organization=org, dedup_key="busy"),
    }


PAGES = [
    ("my queue", lambda b: "/console/queue/mine/"),
    ("unassigned", lambda b: "/console/queue/unassigned/"),
    (
        "filtered list",
        lambda b: (
            f"/console/queue/open/?severity=high&program={b['program'].pk}&age=gt7d&due=overdue"
        ),
    ),
    ("item detail", lambda b: f"/console/items/{b['item'].pk}/"),
    ("dashboard", lambda b: f"/console/programs/{b['program'].pk}/health/"),
    ("admin changelist", lambda b: "/admin/programs/opsexception/"),
    ("timeline (busy)", lambda b: f"/console/enrollments/{b['busy'].pk}/"),
]


def measure(client, base, repeat, only=None):
    out = {}
    for name, url_of in PAGES:
        if only is not None and name not in only:
            continue
        url = url_of(base)
        response = client.get(url)  # warm-up
        assert response.status_code == 200, (name, url, response.status_code)
        times, cpu, queries = [], [], 0
        for _ in range(repeat):
            reset_queries()
            with CaptureQueriesContext(connection) as ctx:
                start, start_cpu = time.perf_counter(), time.process_time()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
            assert response.status_code == 200, (name, response.status_code)
            queries = max(queries, len(ctx.captured_queries))
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        out[name] = {
            "p50": statistics.median(times),
            "p95": p95,
            "queries": queries,
            "cpu": statistics.median(cpu),
        }
    return out


def coord_client(base):
    client = Client()
    client.force_login(base["users"]["coordinator"])
    return client


def main():
    print(f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}")
    call_command("migrate", verbosity=0)
    from programs.models import AuditEvent, OpsException

    if ARGS.reuse:
        base = load_base()
        client = Client()
        client.force_login(base["users"]["lead"])
        baseline = None
        seeded = 0.0
    else:
        if OpsException.objects.exists():
            sys.exit("the bench database is not empty: drop and create it, or pass --reuse")
        base = seed_base()
        client = Client()
        client.force_login(base["users"]["lead"])
        baseline = measure(client, base, REPEAT)
        baseline["my queue"] = measure(coord_client(base), base, REPEAT, only={"my queue"})[
            "my queue"
        ]
        start = time.perf_counter()
        seed_bulk(base)
        seeded = time.perf_counter() - start
    print(
        f"seeded {OpsException.objects.count():,} exceptions and "
        f"{AuditEvent.objects.count():,} audit rows in {seeded:.1f} s"
    )
    # The lead sees everything of the org; the coordinator's "my queue" is the
    # one with the claimed items, so measure as the coordinator too.
    results = measure(client, base, REPEAT)
    results["my queue"] = measure(coord_client(base), base, REPEAT, only={"my queue"})["my queue"]
    # "cpu p50" is this process's CPU time per render (Python, templates,
    # the driver), not the database server's: on a shared, loaded machine
    # it moves far less than the wall-clock figures.
    print(
        f"\n{'page':<18} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'queries':>8} "
        f"{'base p95':>9} {'ratio':>6}"
    )
    worst = 0.0
    for name, _ in PAGES:
        r = results[name]
        worst = max(worst, r["p95"])
        if baseline is None:
            base_p95, ratio = "n/a", "n/a"
        else:
            b = baseline[name]["p95"]
            base_p95, ratio = f"{b:.1f}", f"{r['p95'] / b:.1f}" if b else "n/a"
        print(
            f"{name:<18} {r['p50']:8.1f} {r['p95']:8.1f} {r['cpu']:8.1f} {r['queries']:8d} "
            f"{base_p95:>9} {ratio:>6}"
        )
    verdict = "PASS" if worst <= ARGS.target_ms else "OVER TARGET"
    print(f"\nworst p95 {worst:.1f} ms; target {ARGS.target_ms:.0f} ms: {verdict}")
    print(f"sizes: {N_EXC:,} exceptions, {N_AUDIT:,} audit rows, {REPEAT} renders per page")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
