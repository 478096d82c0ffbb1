from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from messaging.models import MessageTemplate
from messaging.services import template_create
from programs.actors import Actor
from programs.models import Program

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "dpp_templates.yaml"


def load_templates(*, program, path=DEFAULT_FILE, actor=None) -> tuple[int, int]:
    """Create and publish each template of `path` unless an identical published
    version exists; return (created, unchanged). Safe to run repeatedly, and
    all or nothing: one refused template publishes none of the file's."""
    actor = actor or Actor.system("load_templates")
    with transaction.atomic():
        return _load(program, _entries(path), actor)


def _entries(path) -> list[dict]:
    """The file's templates, or ValueError saying what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path} must be a YAML list of templates (key, channel, body, ...)")
    for index, entry in enumerate(entries):
        missing = [name for name in ("key", "channel", "body") if not entry.get(name)]
        if missing:
            raise ValueError(f"{path}: template [{index}] needs {', '.join(missing)}")
    return entries


def _load(program, entries, actor) -> tuple[int, int]:
    created = unchanged = 0
    for entry in entries:
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
        try:
            created, unchanged = load_templates(program=found, path=file)
        except ValidationError as exc:
            reasons = (
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
                if hasattr(exc, "error_dict")
                else " ".join(exc.messages)
            )
            raise CommandError(
                f"{file}: a template was refused, none published: {reasons}"
            ) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"{found}: {created} template(s) published, {unchanged} unchanged")
        )
