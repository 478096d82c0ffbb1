"""Benchmark: does operational load grow no faster than the program?

Simulates the demo DPP program (`manage.py simulate`'s engine: real services,
jobs, outbox, webhook dispatcher and messaging connector on a virtual clock,
with faults) at several sizes, each in its own process and, on SQLite, its
own fresh database. Per size it reports:
- CPU seconds per participant-day (this process and its children; the
  PostgreSQL server's own CPU is not included),
- database rows written per participant,
- the strain index (manual interventions per 100 active participants per
  week) and exceptions per 100 participants per day.

Baseline, measured in the same run: the same program with 1 participant over
the same days. It is the fixed cost of the clock (hourly jobs, snapshots,
process start), subtracted to get the *marginal* CPU per participant-day.
Targets: marginal CPU per participant-day within ±25% of the smallest size
(linear scaling), and a strain index that does not rise with size (within
+25% of the smallest size, or +5 points, whichever is larger, since small
programs are noisy).

    .venv/bin/python bench/scale_curve.py --quick          # CI: 50, 150, 400 x 2 days
    .venv/bin/python bench/scale_curve.py                  # 1k, 10k, 100k x 14 days
    .venv/bin/python bench/scale_curve.py --sizes 1000,10000 --days 14 --plot docs/img/sim-scale.png
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FAULTS = "outage=1@10h+5h,msgfail=0.04,late=0.1,dup=0.05,dropout=0.12"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="50, 150, 400 participants x 2 days (CI size)"
    )
    p.add_argument("--sizes", help="comma-separated participant counts")
    p.add_argument("--days", type=int)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--faults", default=FAULTS)
    p.add_argument("--plot", help="write the PNG curve here")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--max-cpu-spread", type=float, default=0.25)
    p.add_argument("--worker", nargs=3, metavar=("N", "DAYS", "LABEL"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- one size, in its own process ------------------------------------------------


def worker(n: int, days: int, label: str, seed: int, faults: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_ENV", "test")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    if os.environ["DATABASE_URL"].startswith("sqlite"):
        call_command("migrate", verbosity=0)
    import yaml

    from messaging.management.commands.load_templates import load_templates
    from participants.simulation.engine import SimConfig, simulate
    from participants.simulation.faults import parse_faults
    from programs.actors import Actor
    from programs.services import organization_create, program_activate, program_load_definition

    actor = Actor.system("bench")
    org = organization_create(slug=f"bench-{label}", name=f"Bench {label}", actor=actor)
    document = yaml.safe_load((ROOT / "programs" / "fixtures" / "dpp.yaml").read_text())
    version, _ = program_load_definition(organization=org, document=document, actor=actor)
    program = program_activate(program_id=version.program_id, actor=actor)
    load_templates(program=program, actor=actor)
    result = simulate(
        SimConfig(
            program=program,
            participants=n,
            days=days,
            seed=seed,
            faults=parse_faults(faults),
            progress=sys.stderr.isatty(),
            ref_prefix=f"b{label}",
        )
    )
    own = resource.getrusage(resource.RUSAGE_SELF)
    s = result.summary
    print(
        json.dumps(
            {
                "participants": n,
                "days": days,
                "sim_cpu_seconds": s["cpu_seconds"],
                "process_cpu_seconds": round(own.ru_utime + own.ru_stime, 2),
                "wall_seconds": s["wall_seconds"],
                "db_rows": s["db_rows"],
                "db_rows_per_participant": s["db_rows_per_participant"],
                "strain_index": s["strain_index"],
                "exceptions_opened": s["exceptions_opened"],
                "automation_rate": s["automation_rate"],
                "mean_exceptions_per_100_per_day": round(
                    sum(result.series["exceptions_per_100_per_day"])
                    / max(len(result.series["exceptions_per_100_per_day"]), 1),
                    2,
                ),
            }
        )
    )


def run_size(n: int, days: int, args, label: str) -> dict:
    env = dict(os.environ)
    db = None
    if "DATABASE_URL" not in os.environ:
        db = Path(f"/tmp/baton_bench_scale_{label}.db")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        env["DATABASE_URL"] = f"sqlite:///{db}"
    started = time.perf_counter()
    command = [sys.executable, __file__, "--worker", str(n), str(days), label]
    command += ["--seed", str(args.seed), "--faults", args.faults]
    proc = subprocess.run(
        command,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    return figures


# --- the curve -----------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        n, days, label = args.worker
        worker(int(n), int(days), label, args.seed, args.faults)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    sizes = sizes or ([50, 150, 400] if args.quick else [1000, 10_000, 100_000])
    days = args.days or (2 if args.quick else 14)
    stamp = f"{os.getpid()}"
    database = os.environ.get("DATABASE_URL", "sqlite (fresh file per size)").split("@")[-1]
    print(f"scale curve: sizes {sizes} x {days} days, faults {args.faults}, db {database}")
    baseline = run_size(1, days, args, f"{stamp}-base")
    fixed = baseline["sim_cpu_seconds"]
    print(f"baseline (1 participant): {fixed:.2f} CPU s fixed cost of the clock over {days} days")
    rows = []
    for n in sizes:
        r = run_size(n, days, args, f"{stamp}-{n}")
        pdays = n * days
        r["cpu_ms_per_participant_day"] = round(1000 * r["sim_cpu_seconds"] / pdays, 2)
        r["marginal_cpu_ms_per_participant_day"] = round(
            1000 * max(r["sim_cpu_seconds"] - fixed, 0) / pdays, 2
        )
        rows.append(r)
        print(
            f"  {n:>7} participants: {r['sim_cpu_seconds']:8.1f} CPU s, "
            f"{r['cpu_ms_per_participant_day']:7.2f} ms/participant-day "
            f"(marginal {r['marginal_cpu_ms_per_participant_day']:.2f}), "
            f"{r['db_rows_per_participant']} rows/participant, strain {r['strain_index']}, "
            f"{r['elapsed_seconds']} s elapsed",
            flush=True,
        )
    first = rows[0]
    print()
    print(
        "| participants | days | CPU s | CPU ms / participant-day | marginal | ratio to smallest "
        "| rows / participant | strain index | exceptions / 100 / day | automation |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r in rows:
        ratio = r["marginal_cpu_ms_per_participant_day"] / (
            first["marginal_cpu_ms_per_participant_day"] or 1
        )
        r["ratio_to_smallest"] = round(ratio, 2)
        print(
            f"| {r['participants']:,} | {r['days']} | {r['sim_cpu_seconds']} | "
            f"{r['cpu_ms_per_participant_day']} | {r['marginal_cpu_ms_per_participant_day']} | "
            f"{ratio:.2f}x | {r['db_rows_per_participant']} | {r['strain_index']} | "
            f"{r['mean_exceptions_per_100_per_day']} | {r['automation_rate']} % |"
        )
        if abs(ratio - 1) > args.max_cpu_spread:
            ok = False
    strain0 = first["strain_index"] or 0
    strain_ok = all((r["strain_index"] or 0) <= max(strain0 * 1.25, strain0 + 5) for r in rows)
    print()
    print(
        f"linear CPU (marginal within ±{args.max_cpu_spread:.0%}): {'yes' if ok else 'NO'}; "
        f"strain index not rising: {'yes' if strain_ok else 'NO'}"
    )
    document = {"days": days, "faults": args.faults, "baseline": baseline, "sizes": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    if args.plot:
        plot(document, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


def plot(document: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = document["sizes"]
    sizes = [r["participants"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    left.plot(sizes, [r["cpu_ms_per_participant_day"] for r in rows], "o-", label="total")
    left.plot(
        sizes, [r["marginal_cpu_ms_per_participant_day"] for r in rows], "s--", label="marginal"
    )
    left.set_xscale("log")
    left.set_ylim(bottom=0)
    left.set_xlabel("participants")
    left.set_ylabel("CPU ms / participant-day")
    left.legend(fontsize=8)
    left.set_title("CPU per participant-day", fontsize=9)
    right.plot(sizes, [r["strain_index"] or 0 for r in rows], "o-", color="#c0504d")
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("participants")
    right.set_ylabel("interventions / 100 active / week")
    right.set_title("Strain index", fontsize=9)
    fig.suptitle(f"Scale curve: {document['days']} days, faults {document['faults']}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
