"""Benchmark: partner event ingest over HTTP (gunicorn + PostgreSQL).

In one run, against one freshly migrated PostgreSQL database:
- baseline: a bare DRF endpoint (bench/bare_urls.py: no auth, no checks)
  that inserts one row per request, at /api/bare/ (the same middleware
  path as the partner API), served by gunicorn with the same workers and
  threads (default: cpu count x 4 threads, gthread): the framework ceiling;
- `POST /api/v1/events/` with everything real: bearer-key auth, throttle,
  PHI guard, Idempotency-Key claim and stored response, event storage, step
  matching under the enrollment row lock, audit and outbox rows;
- `POST /api/v1/events/batch/` with batches of 500 (100 in --quick).
Load: N concurrent clients (default 8), each a keep-alive HTTP connection.
Prints events/s and p50/p99 latency, and the ratio single/bare. On Linux
it also prints the CPU each phase spent per request, split between the
gunicorn workers, PostgreSQL's processes and this load generator (from
/proc): on a machine the phase keeps busy, the ratio is about the inverse
ratio of those totals, which vary far less from run to run than rates.
Targets: single >= 50% of bare, p99 <= 50 ms; batch >= 5,000 events/s.

    .venv/bin/python bench/ingest.py            # 15 s per phase
    .venv/bin/python bench/ingest.py --quick    # 3 s per phase (CI)
Needs PostgreSQL at BENCH_PG (default postgres://postgres@127.0.0.1:5432);
creates and drops the database `baton_bench_ingest`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "baton_bench_ingest"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s phases, 200 participants, batch 50")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=None, help="gunicorn workers (default cpu count)")
    p.add_argument(
        "--threads", type=int, default=4, help="threads per gunicorn worker (gthread; default 4)"
    )
    p.add_argument("--participants", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    return p.parse_args()


def pg_url(dbname: str) -> str:
    return (
        os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/") + "/" + dbname
    )


def recreate_database():
    import psycopg

    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def server_env(settings_module: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": pg_url(DB_NAME),
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "API_THROTTLE_RATE": "100000000/min",
        "DB_POOL_MAX_SIZE": "4",
    }
    env.pop("TEST_DATABASE_NAME", None)
    return env


def setup_data(n_participants: int) -> tuple[str, list[str]]:
    """Migrate, seed the DPP program, participants with open enrollments, a key."""
    env = server_env("config.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    script = f"""
import json, yaml
from programs.actors import Actor
from programs.services import organization_create, program_load_definition, program_activate
from participants.services import participant_upsert, enrollment_open
from integrations.auth import api_client_create
actor = Actor.system("bench")
org = organization_create(slug="bench", name="Bench", actor=actor)
doc = yaml.safe_load(open("programs/fixtures/dpp.yaml"))
version, _ = program_load_definition(organization=org, document=doc, actor=actor)
program = program_activate(program_id=version.program_id, actor=actor)
refs = []
for i in range({n_participants}):
    p, _ = participant_upsert(organization=org, external_ref=f"BENCH-{{i:06d}}", actor=actor)
    enrollment_open(participant=p, program=program, actor=actor)
    refs.append(p.external_ref)
client, raw = api_client_create(organization=org, name="bench", actor=actor)
print(json.dumps({{"key": raw, "refs": refs}}))
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    with __import__("psycopg").connect(pg_url(DB_NAME), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_bare_row (id bigserial primary key, body jsonb not null)")
    return data["key"], data["refs"]


def start_gunicorn(settings_module: str, wsgi: str, port: int, workers: int, threads: int):
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            wsgi,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--log-level",
            "warning",
            "--timeout",
            "300",
        ],
        cwd=ROOT,
        env=server_env(settings_module),
        start_new_session=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gunicorn on {port} did not start")


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds_by_group() -> dict[str, float] | None:
    """CPU seconds (user + system) so far of every process on the machine,
    summed into gunicorn / postgres / load generator; None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    groups = {"gunicorn": 0.0, "postgres": 0.0, "load generator": 0.0}
    own_pid = str(os.getpid())
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if entry.name == own_pid:
            groups["load generator"] += seconds
        elif name in ("gunicorn", "postgres"):
            groups[name] += seconds
    return groups


def run_load(url, make_body, headers_for, clients, seconds, expect):
    """N threads post for `seconds`; returns (requests, latencies, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    counter = [0]

    def worker(n):
        local, bad = [], 0
        with httpx.Client(timeout=300) as http:
            while time.perf_counter() < stop_at:
                with lock:
                    counter[0] += 1
                    seq = counter[0]
                body = make_body(n, seq)
                started = time.perf_counter()
                response = http.post(url, content=body, headers=headers_for(n, seq))
                local.append(time.perf_counter() - started)
                if response.status_code != expect:
                    bad += 1
                    if bad == 1:
                        print(f"  unexpected {response.status_code}: {response.text[:200]}")
        with lock:
            latencies.extend(local)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    cpu_before = cpu_seconds_by_group()
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu_after = cpu_seconds_by_group()
    if cpu_before and cpu_after and latencies:
        per_request = {
            group: 1000 * (cpu_after[group] - cpu_before[group]) / len(latencies)
            for group in cpu_before
        }
        print(
            f"  {url}: CPU per request "
            + ", ".join(f"{group} {ms:.2f} ms" for group, ms in per_request.items())
            + f" (total {sum(per_request.values()):.2f} ms)"
        )
    return len(latencies), elapsed, latencies, errors[0]


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main():
    args = parse_args()
    seconds = args.seconds or (3 if args.quick else 15)
    n_participants = args.participants or (200 if args.quick else 2000)
    batch_size = args.batch or (50 if args.quick else 500)
    workers = args.workers or (os.cpu_count() or 1)
    threads = args.threads
    print(
        f"ingest bench: {args.clients} clients, {workers} gunicorn workers x {threads} threads, "
        f"{seconds}s phases, load average {os.getloadavg()[0]:.2f}"
    )
    recreate_database()
    key, refs = setup_data(n_participants)
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    run_id = f"{time.time():.0f}"

    def event(n, seq):
        return {
            "id": f"evt-{run_id}-{n}-{seq}",
            "type": random.choice(["eligibility.screened", "device.synced", "consent.recorded"]),
            "external_ref": random.choice(refs),
            # "now", as a partner forwards what just happened: each event is
            # newer than the last, so it moves its enrollment's last event time
            "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "data": {"source": "scale", "weight_kg": 81.4, "batch": seq},
        }

    results = {}
    bare = start_gunicorn("bench.bare_settings", "bench.bare_wsgi", 8771, workers, threads)
    try:
        count, elapsed, lat, errors = run_load(
            "http://127.0.0.1:8771/api/bare/",
            lambda n, s: json.dumps(event(n, s)),
            lambda n, s: {"Content-Type": "application/json"},
            args.clients,
            seconds,
            201,
        )
        results["bare"] = (count / elapsed, pct(lat, 0.5), pct(lat, 0.99), errors)
    finally:
        stop(bare)

    real = start_gunicorn("config.settings", "config.wsgi", 8772, workers, threads)
    try:
        count, elapsed, lat, errors = run_load(
            "http://127.0.0.1:8772/api/v1/events/",
            lambda n, s: json.dumps(event(n, s)),
            lambda n, s: {**auth, "Idempotency-Key": f"idem-{run_id}-{n}-{s}"},
            args.clients,
            seconds,
            202,
        )
        results["single"] = (count / elapsed, pct(lat, 0.5), pct(lat, 0.99), errors)

        count, elapsed, lat, errors = run_load(
            "http://127.0.0.1:8772/api/v1/events/batch/",
            lambda n, s: json.dumps(
                {"events": [event(n, s * 10_000 + i) for i in range(batch_size)]}
            ),
            lambda n, s: auth,
            args.clients,
            seconds,
            200,
        )
        results["batch"] = (count * batch_size / elapsed, pct(lat, 0.5), pct(lat, 0.99), errors)
    finally:
        stop(real)

    bare_rate, single_rate, batch_rate = (results[k][0] for k in ("bare", "single", "batch"))
    for name, (rate, p50, p99, errors) in results.items():
        unit = "events/s" if name == "batch" else "req/s"
        print(
            f"{name:>7}: {rate:9.1f} {unit}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  errors {errors}"
        )
    ratio = single_rate / bare_rate
    print(f"single / bare = {ratio:.2f} (target >= 0.50)")
    print(f"single p99 = {results['single'][2]:.1f} ms (target <= 50)")
    print(f"batch = {batch_rate:.0f} events/s (target >= 5000)")
    print(
        "RESULT",
        json.dumps(
            {
                "bare_rps": round(bare_rate, 1),
                "single_rps": round(single_rate, 1),
                "single_p99_ms": round(results["single"][2], 1),
                "ratio": round(ratio, 3),
                "batch_events_per_s": round(batch_rate, 1),
                "batch_p50_ms": round(results["batch"][1], 1),
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        ),
    )
    with __import__("psycopg").connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
