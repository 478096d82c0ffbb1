from django.urls import path

from programs.security import views

app_name = "security"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.login_verify_view, name="login_verify"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("security/mfa/", views.mfa_overview_view, name="mfa"),
    path("security/mfa/setup/", views.mfa_setup_view, name="mfa_setup"),
    path("security/mfa/recovery-codes/", views.mfa_recovery_codes_view, name="mfa_recovery_codes"),
    path("security/session/", views.session_view, name="session"),
    path("security/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("security/audit/", views.audit_list_view, name="audit"),
    path("security/audit/export.csv", views.audit_export_view, name="audit_export"),
]
