from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError

from messaging.models import MessageTemplate
from messaging.services import template_create
from programs.actors import Actor
from programs.models import Program

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "dpp_templates.yaml"


def load_templates(*, program, path=DEFAULT_FILE, actor=None) -> tuple[int, int]:
    """Create and publish each template of `path` unless an identical published
    version exists; return (created, unchanged). Safe to run repeatedly."""
    actor = actor or Actor.system("load_templates")
    created = unchanged = 0
    for entry in yaml.safe_load(Path(path).read_text()):
        latest = (
            MessageTemplate.objects.filter(
                program=program,
                key=entry["key"],
                channel=entry["channel"],
                locale=entry.get("locale", "en"),
                published_at__isnull=False,
            )
            .order_by("-version")
            .first()
        )
        if (
            latest
            and latest.body == entry["body"]
            and latest.subject == entry.get("subject", "")
            and latest.links == entry.get("links", {})
            and latest.complete_on == entry.get("complete_on", "delivered")
        ):
            unchanged += 1
            continue
        template_create(
            program=program,
            key=entry["key"],
            channel=entry["channel"],
            locale=entry.get("locale", "en"),
            subject=entry.get("subject", ""),
            body=entry["body"],
            links=entry.get("links", {}),
            complete_on=entry.get("complete_on", "delivered"),
            actor=actor,
            publish=True,
        )
        created += 1
    return created, unchanged


class Command(BaseCommand):
    help = "Create and publish message templates for a program from a YAML file (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--organization", default="demo", help="Organization slug")
        parser.add_argument("--program", default="dpp", help="Program slug")
        parser.add_argument("--file", default=str(DEFAULT_FILE))

    def handle(self, *args, organization, program, file, **options):
        found = Program.objects.filter(organization__slug=organization, slug=program).first()
        if found is None:
            raise CommandError(f"no program {program!r} in organization {organization!r}")
        created, unchanged = load_templates(program=found, path=file)
        self.stdout.write(
            self.style.SUCCESS(f"{found}: {created} template(s) published, {unchanged} unchanged")
        )
