from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # The admin's own login would skip the second factor: send it to ours.
    path(
        f"{settings.ADMIN_URL}login/",
        RedirectView.as_view(url=settings.LOGIN_URL, query_string=True),
        name="admin_login_redirect",
    ),
    path(settings.ADMIN_URL, admin.site.urls),
    path("", include("programs.security.urls")),
    path("api/v1/", include("config.api_urls")),
    path("console/", include("programs.console.urls")),
    path("console/", include("participants.console.urls")),
    path("", include("programs.urls")),
]

# Under /api/ these answer with RFC 9457 problem+json; elsewhere Django's pages.
handler400 = "integrations.problems.api_handler400"
handler403 = "integrations.problems.api_handler403"
handler404 = "integrations.problems.api_handler404"
handler500 = "integrations.problems.api_handler500"
