import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from programs.actors import Actor
from programs.definitions import load_definition_text
from programs.models import ProgramState
from programs.services import membership_grant, organization_create, program_activate
from programs.services.programs import program_load_definition

DPP = Path(__file__).resolve().parents[2] / "fixtures" / "dpp.yaml"
DEMO_USERS = (("coordinator", "coordinator"), ("lead", "lead"), ("auditor", "auditor"))


class Command(BaseCommand):
    help = "Seed the demo organization, the Diabetes Prevention Program and demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Use this password for the demo logins")

    def handle(self, *args, password=None, **options):
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
        self.stdout.write("Demo logins (one password for all, new on every seed):")
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {username:<12} role={role:<12} password={password}")
