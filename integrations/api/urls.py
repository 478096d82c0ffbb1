"""/api/v1/ routes of the integrations app, plus the OpenAPI schema and docs."""

from importlib.util import find_spec

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from integrations.api import (
    schema,  # noqa: F401  (registers the auth extension)
    views,
)

urlpatterns = [
    path("programs/", views.ProgramListView.as_view(), name="api-programs"),
    path("exceptions/", views.ExceptionListView.as_view(), name="api-exceptions"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

# The webhook endpoints (integrations/api/webhook_views.py, owned by the
# webhooks work) join here once that module exists and exposes `urlpatterns`.
if find_spec("integrations.api.webhook_views") is not None:
    from integrations.api import webhook_views

    urlpatterns += getattr(webhook_views, "urlpatterns", [])
