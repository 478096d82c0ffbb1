from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Partner integrations"

    def ready(self):
        from integrations import admin_api_clients, idempotency, receivers  # noqa: F401
        from programs.signals import exception_opened, exception_resolved

        exception_opened.connect(receivers.on_exception_opened, dispatch_uid="outbox_exc_opened")
        exception_resolved.connect(
            receivers.on_exception_resolved, dispatch_uid="outbox_exc_resolved"
        )
        from integrations import delivery_setup, security_jobs

        security_jobs.register()

        delivery_setup.setup()
