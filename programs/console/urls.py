from django.urls import path

from programs.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("queue/<slug:tab>/", views.queue, name="queue"),
    path("items/<int:pk>/", views.item_detail, name="item"),
    path("items/<int:pk>/<slug:action>/", views.item_action, name="item_action"),
    path("claim-next/", views.claim_next, name="claim_next"),
    path("bulk/", views.bulk, name="bulk"),
]
