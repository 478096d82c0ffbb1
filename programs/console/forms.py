"""Input of the console actions. Every field error reaches the user as a message."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

SNOOZE_CHOICES = [
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("1d", "1 day"),
    ("3d", "3 days"),
    ("7d", "1 week"),
    ("custom", "Until…"),
]
SNOOZE_DELTAS = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
}
DATETIME_LOCAL = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


class ResolveForm(forms.Form):
    note = forms.CharField(max_length=2000, strip=True, label="Resolution note")


class DismissForm(forms.Form):
    reason = forms.CharField(max_length=2000, strip=True, label="Reason")


class SnoozeForm(forms.Form):
    duration = forms.ChoiceField(choices=SNOOZE_CHOICES, initial="1d", label="Snooze for")
    until = forms.DateTimeField(required=False, input_formats=DATETIME_LOCAL, label="Until")
    reason = forms.CharField(max_length=500, required=False, strip=True)

    def clean(self):
        data = super().clean()
        duration = data.get("duration")
        if duration == "custom":
            until = data.get("until")
            if until is None:
                raise forms.ValidationError("give a date and time to snooze until")
        elif duration:
            until = timezone.now() + SNOOZE_DELTAS[duration]
        else:
            return data
        if until <= timezone.now():
            raise forms.ValidationError("snooze until must be in the future")
        data["until_at"] = until
        return data


class ReassignForm(forms.Form):
    assignee = forms.TypedChoiceField(coerce=int, label="Assign to")

    def __init__(self, *args, candidates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [(u.pk, u.get_username()) for u in candidates]


class RetryForm(forms.Form):
    label = forms.CharField(max_length=200, required=False)


BULK_ACTIONS = [
    ("assign", "Assign to…"),
    ("snooze", "Snooze"),
    ("resolve", "Resolve with note"),
    ("retry", "Retry"),
]


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BULK_ACTIONS)
    scope = forms.ChoiceField(
        choices=[("selected", "Selected items"), ("matching", "All items matching the filter")],
        initial="selected",
    )
    assignee = forms.TypedChoiceField(coerce=int, required=False)
    duration = forms.ChoiceField(choices=SNOOZE_CHOICES[:-1], required=False, initial="1d")
    note = forms.CharField(max_length=2000, required=False, strip=True)

    def __init__(self, *args, candidates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [("", "—")] + [
            (u.pk, u.get_username()) for u in candidates
        ]

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == "assign" and not data.get("assignee"):
            self.add_error("assignee", "choose who to assign the items to")
        if action == "resolve" and not data.get("note"):
            self.add_error("note", "a resolution note is required")
        if action == "snooze" and not data.get("duration"):
            self.add_error("duration", "choose how long to snooze")
        return data


def parse_number(text: str) -> int | None:
    """A whole number written in digits, or None.

    `str.isdecimal`, not `isdigit`: '²' is a digit that `int()` refuses.
    A number too large for any id is still a number: queries given one
    match nothing (programs.lookups). Past 20 digits it is read as 2**64,
    as far beyond every id, because `int()` refuses numbers of thousands
    of digits.
    """
    if not text.isdecimal():
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= 20 else 2**64


def parse_ids(values) -> tuple[list[int], list[str]]:
    """Item ids from checkbox values; anything not a positive integer is reported."""
    ids, bad = [], []
    for value in values:
        value = str(value).strip()
        number = parse_number(value)
        if number:
            ids.append(number)
        elif value:
            bad.append(value[:40])
    return sorted(set(ids)), bad
