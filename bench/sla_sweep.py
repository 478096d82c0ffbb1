"""Benchmark: the SLA sweep over a large step table.

Seeds N step instances (10 per enrollment, 1% past due) with set-based
INSERT … SELECT, then measures in the same run:
- baseline: one hand-written `UPDATE … SET state='overdue' … WHERE
  state='pending' AND due_at < now RETURNING …` doing the same marking
  (run 3 times, each rolled back; the best time counts);
- the real `participants.services.sla_sweep` (marking plus one sla_breach
  exception item, two audit rows and two outbox events per overdue step, and
  the outbox after-commit hooks, whose share is printed separately).
Prints sweep seconds, the ratio to the baseline, and the peak RSS of this
process. Targets: ratio <= 3, peak RSS < 200 MB.

Full size on PostgreSQL (its own database; migrated here):
    psql -h 127.0.0.1 -U postgres -c 'create database baton_bench'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_bench .venv/bin/python bench/sla_sweep.py
CI: .venv/bin/python bench/sla_sweep.py --quick   (SQLite in /tmp, 20,000 steps)
"""

from __future__ import annotations

import argparse
import os
import resource
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
    p.add_argument("--max-ratio", type=float, default=3.0)
    p.add_argument("--max-rss-mb", type=float, default=200.0)
    return p.parse_args()


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


def seed(n_steps: int):
    """Set-based: three INSERT … SELECT statements, nothing row by row in Python."""
    actor = Actor.system("bench")
    stamp = time.strftime("%Y%m%d%H%M%S")
    org = Organization.objects.create(slug=f"bench-{stamp}", name=f"Bench {stamp}")
    version, _ = program_load_definition(organization=org, document=DEFINITION, actor=actor)
    program = program_activate(program_id=version.program_id, actor=actor)
    n_enrollments = n_steps // STEPS_PER_ENROLLMENT
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    past, future, at = adapt(now - timedelta(hours=1)), adapt(now + timedelta(days=30)), adapt(now)
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
            " CASE WHEN ((e.id * 10 + k.x) %% 100) = 0 THEN %s ELSE %s END,"
            " 'medium', %s, '', '', ''"
            f" FROM {e_table} e CROSS JOIN {numbers.replace('g(x)', 'k(x)').replace('AS g', 'AS k')}"
            " WHERE e.organization_id = %s",
            [True, past, future, at, STEPS_PER_ENROLLMENT, org.pk],
        )
    if pg:
        with connection.cursor() as c:
            c.execute(f"VACUUM ANALYZE {s_table}")
            c.execute(f"VACUUM ANALYZE {e_table}")
    return org


def baseline(now) -> tuple[float, int]:
    """The hand-written single statement, rolled back so the sweep finds the same rows."""
    table = StepInstance._meta.db_table
    at = connection.ops.adapt_datetimefield_value(now)
    sql = (
        f"UPDATE {table} SET state = 'overdue', overdue_at = %s"
        " WHERE state = 'pending' AND due_at IS NOT NULL AND due_at < %s"
        " RETURNING id, enrollment_id, step_key, title, severity, due_at, kind"
    )
    best, count, runs = None, 0, []
    for _ in range(3):
        with transaction.atomic():
            started = time.perf_counter()
            with connection.cursor() as c:
                c.execute(sql, [at, at])
                count = len(c.fetchall())
            elapsed = time.perf_counter() - started
            transaction.set_rollback(True)
        best = elapsed if best is None else min(best, elapsed)
        runs.append(elapsed)
    print("baseline runs: " + ", ".join(f"{r:.3f} s" for r in runs))
    return best, count


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

    outbox._after_commit_hooks[:] = [timed(h) for h in outbox._after_commit_hooks]
    return spent


def main():
    n_steps = ARGS.steps or (20_000 if ARGS.quick else 1_000_000)
    batch_size = ARGS.batch_size or DEFAULT_BATCH_SIZE
    call_command("migrate", verbosity=0, interactive=False)
    print(f"database: {connection.vendor}; steps: {n_steps:,}; batch size: {batch_size}")
    started = time.perf_counter()
    org = seed(n_steps)
    total = StepInstance.objects.filter(enrollment__organization=org).count()
    print(f"seeded {total:,} steps in {time.perf_counter() - started:.1f} s")
    now = timezone.now()
    base_s, base_rows = baseline(now)
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute(f"VACUUM ANALYZE {StepInstance._meta.db_table}")
    hook_times = time_hooks()
    rss_before = rss_mb()
    started = time.perf_counter()
    result = sla_sweep(now=now, batch_size=batch_size)
    sweep_s = time.perf_counter() - started
    peak = rss_mb()
    items = OpsException.objects.filter(organization=org, kind="sla_breach").count()
    ratio = sweep_s / base_s if base_s else float("inf")
    print(f"baseline UPDATE … RETURNING: {base_s:.3f} s for {base_rows:,} rows (best of 3)")
    print(
        f"sla_sweep: {sweep_s:.3f} s; overdue {result['overdue']:,}; "
        f"items opened {result['exceptions_opened']:,} ({items:,} in the table); "
        f"batches {result['batches']}"
    )
    hooks_s = sum(hook_times)
    print(
        f"  of which after-commit hooks (integrations' webhook fan-out): {hooks_s:.3f} s; "
        f"without them {sweep_s - hooks_s:.3f} s = {(sweep_s - hooks_s) / base_s:.2f}x baseline"
    )
    print(f"ratio sweep / baseline: {ratio:.2f} (target <= {ARGS.max_ratio})")
    print(f"peak RSS: {peak:.0f} MB (before sweep {rss_before:.0f} MB; target < {ARGS.max_rss_mb})")
    ok = result["overdue"] == base_rows == items and peak < ARGS.max_rss_mb
    if not ok:
        print("FAIL: counts differ or memory above target")
        return 1
    if ratio > ARGS.max_ratio:
        print("NOTE: ratio above target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
