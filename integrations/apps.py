from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Partner integrations"

    def ready(self):
        from integrations import receivers
        from programs.signals import exception_opened, exception_resolved

        exception_opened.connect(receivers.on_exception_opened, dispatch_uid="outbox_exc_opened")
        exception_resolved.connect(
            receivers.on_exception_resolved, dispatch_uid="outbox_exc_resolved"
        )
