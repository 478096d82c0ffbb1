from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProgramsConfig(AppConfig):
    name = "programs"
    verbose_name = "Programs, audit and exception queue"

    def ready(self):
        from programs import lookups, roles
        from programs.registries import register_exception_kind, register_schedule

        lookups.install()
        register_exception_kind("manual", "Raised by hand", default_severity="medium")
        register_schedule(
            "programs.wake_snoozed_exceptions",
            "programs.tasks.wake_snoozed_exceptions",
            minutes=1,
            description="Reopen snoozed exception-queue items whose snooze has ended.",
        )
        post_migrate.connect(roles.sync_role_groups_after_migrate, sender=self)
