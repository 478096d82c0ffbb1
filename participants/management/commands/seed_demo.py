import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from messaging.management.commands.load_templates import load_templates
from programs.actors import Actor
from programs.definitions import load_definition_text
from programs.models import ProgramState
from programs.services import membership_grant, organization_create, program_activate
from programs.services.programs import program_load_definition

# The demo seed orchestrates every app, so it lives in the top app.
DPP = Path(__file__).resolve().parents[3] / "programs" / "fixtures" / "dpp.yaml"
DEMO_USERS = (("coordinator", "coordinator"), ("lead", "lead"), ("auditor", "auditor"))
DEMO_PARTICIPANTS = 300
DEMO_DAYS = 4
DEMO_SEED = 42


class Command(BaseCommand):
    help = "Seed the demo organization, the Diabetes Prevention Program and demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Use this password for the demo logins")
        parser.add_argument(
            "--participants",
            type=int,
            default=DEMO_PARTICIPANTS,
            help="Simulated participants for a living demo (0: none)",
        )
        parser.add_argument("--days", type=int, default=DEMO_DAYS, help="Days of simulated history")

    def handle(
        self, *args, password=None, participants=DEMO_PARTICIPANTS, days=DEMO_DAYS, **options
    ):
        actor = Actor.system("seed_demo")
        password = password or secrets.token_urlsafe(12)
        with transaction.atomic():
            org = organization_create(slug="demo", name="Demo Health Co.", actor=actor)
            version, _ = program_load_definition(
                organization=org, document=load_definition_text(DPP.read_text()), actor=actor
            )
            program = version.program
            if program.state == ProgramState.DRAFT:
                program_activate(program_id=program.pk, actor=actor, reason="demo seed")
            User = get_user_model()
            for username, role in DEMO_USERS:
                user, _ = User.objects.get_or_create(username=username)
                user.set_password(password)
                user.save()
                membership_grant(user=user, organization=org, role=role, actor=actor)
        self.stdout.write(self.style.SUCCESS(f"Demo program: {program.name} (v{version.number})"))
        created, unchanged = load_templates(program=program, actor=actor)
        self.stdout.write(f"Message templates: {created} created, {unchanged} unchanged")
        self.simulate_history(program, participants=participants, days=days)
        self.stdout.write("Demo logins (one password for all, new on every seed):")
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {username:<12} role={role:<12} password={password}")

    def simulate_history(self, program, *, participants: int, days: int):
        """A living demo: a few days of simulated history with faults, so the
        console opens on a realistic queue, timeline and dashboard. Skipped
        when the program already has enrollments (a re-seed keeps them)."""
        from participants.models import Enrollment
        from participants.simulation.engine import SimConfig, simulate
        from participants.simulation.faults import DEFAULT_DEMO_FAULTS, parse_faults
        from participants.simulation.report import format_summary

        if participants <= 0 or days <= 0:
            return
        if Enrollment.objects.filter(program=program).exists():
            self.stdout.write("Simulated history: already there (kept)")
            return
        self.stdout.write(
            f"Simulating {participants} participants over {days} days "
            f"(faults: {DEFAULT_DEMO_FAULTS}) ..."
        )
        result = simulate(
            SimConfig(
                program=program,
                participants=participants,
                days=days,
                seed=DEMO_SEED,
                faults=parse_faults(DEFAULT_DEMO_FAULTS),
                ref_prefix="demo",
            )
        )
        self.stdout.write(format_summary(result.summary))
