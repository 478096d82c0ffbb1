from django.urls import path

from messaging.api.views import VendorCallbackView

app_name = "messaging_api"

urlpatterns = [
    path(
        "messaging/callbacks/<int:connector_id>/",
        VendorCallbackView.as_view(),
        name="callback",
    ),
]
