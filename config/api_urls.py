"""Everything under /api/v1/: each app contributes its own url module."""

from django.urls import include, path

urlpatterns = [
    path("", include("integrations.api.urls")),
    path("", include("participants.api.urls")),
    path("", include("messaging.api.urls")),
]
