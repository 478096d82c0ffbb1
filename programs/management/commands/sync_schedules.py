from django.core.management.base import BaseCommand

from programs.schedules import schedules_sync


class Command(BaseCommand):
    help = "Create or update the periodic jobs every app declares in code (idempotent)."

    def handle(self, *args, **options):
        result = schedules_sync()
        self.stdout.write(
            "schedules: {created} created, {updated} updated, {unchanged} unchanged, "
            "{removed} removed".format(**result)
        )
