from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from programs.actors import Actor
from programs.definitions import load_definition_text
from programs.errors import DefinitionError
from programs.models import Organization, ProgramVersion
from programs.services import program_load_definition


class Command(BaseCommand):
    help = "Create a program, or add a new published version, from a YAML definition."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to the YAML (or JSON) definition")
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--draft", action="store_true", help="Add the version unpublished")

    def handle(self, *args, file, org, draft, **options):
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
        try:
            organization = Organization.objects.get(slug=org)
        except Organization.DoesNotExist:
            raise CommandError(f"no organization with slug {org!r}") from None
        try:
            document = load_definition_text(text)
            published_before = _published_numbers(organization, document)
            version, created = program_load_definition(
                organization=organization,
                document=document,
                actor=Actor.system("load_program"),
                publish=not draft,
            )
        except DefinitionError as exc:
            lines = "\n".join(f"  {path_}: {message}" for path_, message in exc.errors)
            raise CommandError(f"{path} is not a valid program definition:\n{lines}") from exc
        state = "published" if version.published_at else "draft"
        if created:
            outcome = f"created version {version.number} ({state})"
        elif version.published_at and version.number not in published_before:
            outcome = f"published version {version.number} (it was a draft)"
        else:
            outcome = f"unchanged at version {version.number} ({state})"
        self.stdout.write(self.style.SUCCESS(f"{version.program.slug}: {outcome}"))


def _published_numbers(organization, document) -> set[int]:
    program = document.get("program") if isinstance(document, dict) else None
    slug = program.get("slug") if isinstance(program, dict) else None
    return set(
        ProgramVersion.objects.filter(
            program__organization=organization, program__slug=slug, published_at__isnull=False
        ).values_list("number", flat=True)
    )
