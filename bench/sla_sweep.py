"""Benchmark: the SLA sweep over a large step table.

Seeds N step instances (10 per enrollment) with set-based INSERT … SELECT:
1% of the steps fall due in each of R one-minute slots, the rest in 30 days.
Then R rounds, interleaved; round r, at a time when exactly slot r is past due
(1% of the table pending and overdue), measures:
- baseline: one hand-written `UPDATE … SET state='overdue' … WHERE
  state='pending' AND due_at < now RETURNING …` doing the same marking
  (run 3 times, each committed and then put back, the best time counts;
  the statement's time without its commit is printed too);
- the real `participants.services.sla_sweep` (marking plus one sla_breach
  exception item, two audit rows and two outbox events per overdue step, and
  the outbox after-commit hooks, whose share is printed separately).
Prints each round and the medians: sweep seconds, ratio to the baseline,
peak RSS of this process, load average. Targets: median ratio <= 3, peak RSS
< 200 MB.

Full size on PostgreSQL (its own database, recreated before each run: every
run adds 1,000,000 steps; migrated here):
    psql -h 127.0.0.1 -U postgres -c 'drop database if exists baton_bench' -c 'create database baton_bench'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_bench .venv/bin/python bench/sla_sweep.py
CI: .venv/bin/python bench/sla_sweep.py --quick   (SQLite in /tmp, 20,000 steps)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20,000 steps (SQLite by default)")
    p.add_argument("--steps", type=int, default=None, help="default 1,000,000 (20,000 quick)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5, help="baseline + sweep rounds (median)")
    p.add_argument("--max-ratio", type=float, default=3.0)
    p.add_argument("--max-rss-mb", type=float, default=200.0)
    args = p.parse_args()
    if not 1 <= args.rounds <= 100:
        p.error("--rounds: 1 to 100 (one 1% slot of the steps per round)")
    return args


ARGS = parse_args()
if ARGS.quick and "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:////tmp/baton_bench_sla_quick.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"/tmp/baton_bench_sla_quick.db{suffix}").unlink(missing_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from datetime import timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from participants.models import Enrollment, Participant, StepInstance  # noqa: E402
from participants.services import sla_sweep  # noqa: E402
from participants.services.sweep import DEFAULT_BATCH_SIZE  # noqa: E402
from programs.actors import Actor  # noqa: E402
from programs.models import OpsException, Organization  # noqa: E402
from programs.services import program_activate, program_load_definition  # noqa: E402

STEPS_PER_ENROLLMENT = 10
DEFINITION = {
    "program": {"slug": "bench", "name": "Bench", "timezone": "America/New_York"},
    "stages": [
        {
            "key": "active",
            "state": "active",
            "steps": [
                {"key": f"step_{k}", "title": f"Step {k}", "kind": "manual", "due_after": "P1D"}
                for k in range(1, STEPS_PER_ENROLLMENT + 1)
            ],
        }
    ],
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(n_steps: int, rounds: int):
    """Set-based: three INSERT … SELECT statements, nothing row by row in Python.

    Step slot = (enrollment id * 10 + step number) % 100; slot r < `rounds` is
    due at `base + r minutes` (1% of the steps per slot), the rest in 30 days.
    Round r sweeps at `round_now(base, r)`: exactly slot r is pending and past
    due then (earlier slots were swept by earlier rounds). Returns (org, base)."""
    actor = Actor.system("bench")
    stamp = time.strftime("%Y%m%d%H%M%S")
    org = Organization.objects.create(slug=f"bench-{stamp}", name=f"Bench {stamp}")
    version, _ = program_load_definition(organization=org, document=DEFINITION, actor=actor)
    program = program_activate(program_id=version.program_id, actor=actor)
    n_enrollments = n_steps // STEPS_PER_ENROLLMENT
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    base = now - timedelta(hours=1)
    future, at = adapt(now + timedelta(days=30)), adapt(now)
    due = [adapt(base + timedelta(minutes=r)) for r in range(rounds)]
    due_case = " ".join("WHEN %s THEN %s" for _ in due)
    p_table, e_table, s_table = (
        Participant._meta.db_table,
        Enrollment._meta.db_table,
        StepInstance._meta.db_table,
    )
    pg = connection.vendor == "postgresql"
    numbers = (
        "generate_series(1, %s) AS g(x)"
        if pg
        else "(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < %s) "
        "SELECT x FROM s) AS g"
    )
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            f"INSERT INTO {p_table} (organization_id, external_ref, source_system, timezone,"
            " locale, tags, created_at, updated_at)"
            f" SELECT %s, 'bench-' || g.x, 'bench', '', '', '[]', %s, %s FROM {numbers}",
            [org.pk, at, at, n_enrollments],
        )
        c.execute(
            f"INSERT INTO {e_table} (organization_id, participant_id, program_id,"
            " program_version_id, state, state_changed_at, state_reason, event_sequence,"
            " created_at, updated_at)"
            f" SELECT %s, p.id, %s, %s, 'active', %s, '', 0, %s, %s FROM {p_table} p"
            " WHERE p.organization_id = %s",
            [org.pk, program.pk, version.pk, at, at, at, org.pk],
        )
        c.execute(
            f"INSERT INTO {s_table} (enrollment_id, stage_key, stage_state, step_key, title,"
            " kind, required, completes_on, state, due_at, severity, created_at,"
            " completed_via, completed_by, note)"
            " SELECT e.id, 'active', 'active', 'step_' || k.x, 'Step ' || k.x, 'manual',"
            " %s, '', 'pending',"
            f" CASE ((e.id * 10 + k.x) %% 100) {due_case} ELSE %s END,"
            " 'medium', %s, '', '', ''"
            f" FROM {e_table} e CROSS JOIN {numbers.replace('g(x)', 'k(x)').replace('AS g', 'AS k')}"
            " WHERE e.organization_id = %s",
            [
                True,
                *[v for r, d in enumerate(due) for v in (r, d)],
                future,
                at,
                STEPS_PER_ENROLLMENT,
                org.pk,
            ],
        )
    if pg:
        with connection.cursor() as c:
            c.execute(f"VACUUM ANALYZE {s_table}")
            c.execute(f"VACUUM ANALYZE {e_table}")
    return org, base


def round_now(base, r: int):
    return base + timedelta(minutes=r, seconds=30)


def baseline(now) -> tuple[float, float, int]:
    """The hand-written single statement, timed with and without its commit.

    The sweep's time includes its commits (each one flushes the WAL of what
    it wrote), so the comparison that counts is against the statement
    committed too: it runs and commits (3 times, the best counts), and each
    time the rows are put back to pending, committed and vacuumed, so the
    sweep finds the same rows. The statement's time before its commit (what
    this benchmark reported before, then rolled back) is printed beside it.
    Returns (best committed seconds, best uncommitted seconds, rows)."""
    table = StepInstance._meta.db_table
    at = connection.ops.adapt_datetimefield_value(now)
    sql = (
        f"UPDATE {table} SET state = 'overdue', overdue_at = %s"
        " WHERE state = 'pending' AND due_at IS NOT NULL AND due_at < %s"
        " RETURNING id, enrollment_id, step_key, title, severity, due_at, kind"
    )
    restore = f"UPDATE {table} SET state = 'pending', overdue_at = NULL WHERE id = ANY(%s)"
    committed, uncommitted, count = [], [], 0
    for _ in range(3):
        with transaction.atomic():
            started = time.perf_counter()
            with connection.cursor() as c:
                c.execute(sql, [at, at])
                rows = c.fetchall()
            uncommitted.append(time.perf_counter() - started)
        committed.append(time.perf_counter() - started)
        count = len(rows)
        ids = [r[0] for r in rows]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as c:
                    c.execute(restore, [ids])
            else:
                StepInstance.objects.filter(pk__in=ids).update(state="pending", overdue_at=None)
        vacuum_steps()
    print(
        "baseline runs (committed / statement only): "
        + ", ".join(f"{a:.3f} / {b:.3f} s" for a, b in zip(committed, uncommitted, strict=True))
    )
    return min(committed), min(uncommitted), count


def time_hooks() -> list[float]:
    """Wrap the outbox after-commit hooks (integrations' webhook fan-out) to
    report how much of the sweep they take; they still run, as in production."""
    from integrations import outbox

    spent = []

    def timed(hook):
        def run(ids):
            started = time.perf_counter()
            try:
                return hook(ids)
            finally:
                spent.append(time.perf_counter() - started)

        return run

    # Same hooks, same declared interests (outbox_wanted), only timed.
    hooks = list(outbox._after_commit_hooks)
    interests = dict(outbox._hook_interests)
    outbox._after_commit_hooks.clear()
    outbox._hook_interests.clear()
    for hook in hooks:
        outbox.register_after_commit_hook(timed(hook), interest=interests.get(hook))
    return spent


def vacuum_steps():
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute(f"VACUUM ANALYZE {StepInstance._meta.db_table}")


def main():
    n_steps = ARGS.steps or (20_000 if ARGS.quick else 1_000_000)
    batch_size = ARGS.batch_size or DEFAULT_BATCH_SIZE
    rounds = ARGS.rounds
    call_command("migrate", verbosity=0, interactive=False)
    print(f"database: {connection.vendor}; steps: {n_steps:,}; batch size: {batch_size}")
    started = time.perf_counter()
    org, base = seed(n_steps, rounds)
    total = StepInstance.objects.filter(enrollment__organization=org).count()
    print(f"seeded {total:,} steps in {time.perf_counter() - started:.1f} s; {rounds} rounds")
    hook_times = time_hooks()
    rss_before = rss_mb()
    results, ok, marked = [], True, 0
    for r in range(rounds):
        now = round_now(base, r)
        vacuum_steps()
        base_s, statement_s, base_rows = baseline(now)
        hooks_before = sum(hook_times)
        started = time.perf_counter()
        result = sla_sweep(now=now, batch_size=batch_size)
        sweep_s = time.perf_counter() - started
        hooks_s = sum(hook_times) - hooks_before
        ratio = sweep_s / base_s if base_s else float("inf")
        results.append((ratio, base_s, sweep_s, hooks_s, sweep_s / statement_s))
        marked += result["overdue"]
        ok = ok and result["overdue"] == base_rows > 0
        print(
            f"round {r + 1}: load {os.getloadavg()[0]:.2f}; baseline {base_s:.3f} s committed "
            f"({base_rows:,} rows); sla_sweep {sweep_s:.3f} s (overdue {result['overdue']:,}, "
            f"items {result['exceptions_opened']:,}, batches {result['batches']}; "
            f"after-commit hooks {hooks_s:.3f} s); ratio {ratio:.2f}"
        )
    peak = rss_mb()
    items = OpsException.objects.filter(organization=org, kind="sla_breach").count()
    ok = ok and items == marked
    med = statistics.median
    print(
        f"median of {rounds} rounds: baseline UPDATE … RETURNING + COMMIT "
        f"{med(x[1] for x in results):.3f} s, "
        f"sla_sweep {med(x[2] for x in results):.3f} s (hooks {med(x[3] for x in results):.3f} s)"
    )
    ratio = med(x[0] for x in results)
    print(f"ratio sweep / baseline, median: {ratio:.2f} (target <= {ARGS.max_ratio})")
    print(
        f"ratio sweep / baseline statement without its commit, median: {med(x[4] for x in results):.2f}"
    )
    print(f"peak RSS: {peak:.0f} MB (before sweep {rss_before:.0f} MB; target < {ARGS.max_rss_mb})")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not ok or peak >= ARGS.max_rss_mb:
        print(f"FAIL: counts differ ({items:,} items) or memory above target")
        return 1
    if ratio > ARGS.max_ratio:
        print("NOTE: ratio above target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
