from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "programs.security"
    label = "security"
    verbose_name = "Access security"

    def ready(self):
        from programs.security import receivers

        receivers.connect()
