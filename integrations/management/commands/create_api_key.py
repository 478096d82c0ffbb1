"""Create a partner API key and print it (the only time it is shown)."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from integrations.auth import api_client_create
from programs.actors import Actor
from programs.models import Organization, Program


class Command(BaseCommand):
    help = (
        "Create an API client for an organization and print its key once. "
        "Example: create_api_key --org acme --name 'EHR referrals' --program dpp"
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--name", required=True, help="Who uses the key")
        parser.add_argument(
            "--program",
            action="append",
            default=[],
            help="Limit the key to this program slug (repeatable). Default: all programs.",
        )
        parser.add_argument("--read-only", action="store_true", help="GET only")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Expire after N days")

    def handle(self, *args, **options):
        try:
            organization = Organization.objects.get(slug=options["org"])
        except Organization.DoesNotExist:
            raise CommandError(f"no organization with slug {options['org']!r}") from None
        programs = []
        for slug in options["program"]:
            program = Program.objects.filter(organization=organization, slug=slug).first()
            if program is None:
                raise CommandError(f"no program {slug!r} in organization {organization.slug}")
            programs.append(program)
        expires_at = None
        if options["expires_in_days"] is not None:
            if options["expires_in_days"] <= 0:
                raise CommandError("--expires-in-days must be positive")
            expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
        try:
            client, raw_key = api_client_create(
                organization=organization,
                name=options["name"],
                programs=programs,
                read_only=options["read_only"],
                expires_at=expires_at,
                actor=Actor.system("create_api_key"),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Created API client {client} ({client.get_permission_display()}). "
            "Store the key now; it cannot be shown again."
        )
        self.stdout.write(raw_key)
