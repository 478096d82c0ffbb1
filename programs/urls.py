from django.urls import path
from django.views.generic import RedirectView

app_name = "programs"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False), name="home"),
]
