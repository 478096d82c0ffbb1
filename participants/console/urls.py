from django.urls import path

from participants.console import subjects, views

app_name = "participants_console"

# The item page shows enrollment/step context through the subject-context
# registry; registering here (the console's URLconf is loaded before any
# console page is served) keeps participants.apps untouched.
subjects.register()

urlpatterns = [
    path("enrollments/<int:pk>/", views.timeline, name="timeline"),
    path("programs/", views.programs, name="programs"),
    path("programs/<int:pk>/health/", views.dashboard, name="dashboard"),
]
