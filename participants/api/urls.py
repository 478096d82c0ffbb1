"""/api/v1/ routes of the participants app."""

from django.urls import path

from participants.api import views

urlpatterns = [
    path("referrals/", views.ReferralCreateView.as_view(), name="api-referrals"),
    path("enrollments/", views.EnrollmentListView.as_view(), name="api-enrollments"),
    path(
        "enrollments/<int:enrollment_id>/",
        views.EnrollmentDetailView.as_view(),
        name="api-enrollment-detail",
    ),
    path(
        "enrollments/<int:enrollment_id>/transitions/",
        views.EnrollmentTransitionView.as_view(),
        name="api-enrollment-transitions",
    ),
    path("events/", views.EventCreateView.as_view(), name="api-events"),
    path("events/batch/", views.EventBatchView.as_view(), name="api-events-batch"),
]
