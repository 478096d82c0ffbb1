"""`manage.py simulate`: run a synthetic program through the real system.

See docs/simulation.md. Example:

    manage.py simulate --program dpp --participants 300 --days 5 --seed 7 \\
        --faults "outage=1@10h+5h,msgfail=0.05,late=0.1,dup=0.05,dropout=0.15"
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from participants.simulation.engine import SimConfig, simulate
from participants.simulation.faults import FaultSpecError, parse_faults
from participants.simulation.report import format_summary, write_report
from programs.models import Program, ProgramState


class Command(BaseCommand):
    help = (
        "Simulate N participants over D days through the real services, jobs, outbox and "
        "connectors on a virtual clock; print a summary and write a JSON + PNG report."
    )

    def add_arguments(self, parser):
        parser.add_argument("--program", required=True, help="Program slug")
        parser.add_argument("--organization", help="Organization slug (if the slug is ambiguous)")
        parser.add_argument("--participants", type=int, required=True)
        parser.add_argument("--days", type=int, required=True)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--faults", default="", help="e.g. outage=1@10h+5h,msgfail=0.05")
        parser.add_argument(
            "--speed",
            type=float,
            default=0.0,
            help="Virtual hours per real second (0, the default: as fast as possible)",
        )
        parser.add_argument("--start", help="Virtual start (ISO 8601, UTC); default: DAYS ago")
        parser.add_argument(
            "--report-dir",
            default=str(Path(settings.BASE_DIR) / "artifacts" / "simulation"),
            help="Where the JSON report and PNG plots go",
        )
        parser.add_argument("--no-plots", action="store_true")
        parser.add_argument("--quiet", action="store_true", help="No progress bar")

    def handle(self, *args, **opts):
        try:
            faults = parse_faults(opts["faults"])
        except FaultSpecError as exc:
            raise CommandError(f"--faults: {exc}") from None
        if opts["participants"] < 1 or opts["days"] < 1:
            raise CommandError("--participants and --days must be at least 1")
        programs = Program.objects.filter(slug=opts["program"]).select_related("organization")
        if opts["organization"]:
            programs = programs.filter(organization__slug=opts["organization"])
        programs = list(programs[:2])
        if not programs:
            raise CommandError(f"--program: no program with slug {opts['program']!r}")
        if len(programs) > 1:
            raise CommandError(f"--program: {opts['program']!r} is ambiguous; add --organization")
        program = programs[0]
        if program.state != ProgramState.ACTIVE:
            raise CommandError(f"--program: {program.slug} is {program.state}, not active")
        start = None
        if opts["start"]:
            try:
                start = datetime.fromisoformat(opts["start"])
            except ValueError:
                raise CommandError(f"--start: {opts['start']!r} is not ISO 8601") from None
            if start.tzinfo is None:
                raise CommandError("--start: give a timezone, e.g. 2026-01-05T00:00+00:00")
        result = simulate(
            SimConfig(
                program=program,
                participants=opts["participants"],
                days=opts["days"],
                seed=opts["seed"],
                faults=faults,
                speed=opts["speed"],
                start=start,
                progress=not opts["quiet"],
            )
        )
        self.stdout.write(format_summary(result.summary))
        prefix = f"{program.slug}-{opts['participants']}x{opts['days']}-seed{opts['seed']}"
        paths = write_report(
            result, Path(opts["report_dir"]), plots=not opts["no_plots"], prefix=prefix
        )
        for path in paths.values():
            self.stdout.write(f"wrote {path}")
