from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator


class LoginForm(AuthenticationForm):
    """Username and password; `authenticate(request, ...)` so axes counts it."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match. Both are case-sensitive.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # AuthenticationForm sets the username's max_length after the field is
        # built, so no validator enforces it: a 5,000-character name reached
        # authenticate(), and axes failed to record the attempt (a 500 on
        # PostgreSQL's varchar(255)).
        username = self.fields["username"]
        username.validators.append(MaxLengthValidator(username.max_length))


class TokenForm(forms.Form):
    otp_token = forms.CharField(
        label="Code",
        max_length=16,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
        help_text="The 6-digit code from your authenticator app, or one of your recovery codes.",
    )

    def clean_otp_token(self):
        return self.cleaned_data["otp_token"].replace(" ", "").replace("-", "")


class EnrollForm(forms.Form):
    otp_token = forms.RegexField(
        label="Code from the app",
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": "Enter the 6-digit code your app shows now."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )

    def clean_otp_token(self):
        return self.cleaned_data["otp_token"].strip()


class AuditFilterForm(forms.Form):
    """Filters of the auditor's view; every field optional."""

    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    action = forms.CharField(
        required=False, max_length=100, help_text="Exact action or a prefix ending in '.'"
    )
    actor = forms.CharField(required=False, max_length=200, label="Who")
    object_type = forms.CharField(required=False, max_length=100)
    object_id = forms.CharField(required=False, max_length=64)
    request_id = forms.CharField(required=False, max_length=64)
    ip_address = forms.GenericIPAddressField(required=False, label="IP address")

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data
