"""Serializer fields whose errors never repeat what the caller sent.

The guide promises that error bodies never echo input (a value sent by
mistake may be an identifier). DRF's ChoiceField says '"jane@example.org" is
not a valid choice.', in query parameters too, which the PHI guard does not
read; this one names the allowed values instead.
"""

from __future__ import annotations

from enum import Enum

from django.utils.dateparse import parse_datetime
from rest_framework import serializers


class ChoiceField(serializers.ChoiceField):
    default_error_messages = {"invalid_choice": "must be one of: {allowed}."}

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        if isinstance(data, Enum) and str(data) != str(data.value):
            data = data.value
        try:
            return self.choice_strings_to_values[str(data)]
        except KeyError:
            self.fail("invalid_choice", allowed=", ".join(self.choice_strings_to_values))


class OffsetDateTimeField(serializers.DateTimeField):
    """An ISO 8601 timestamp that must say its offset (`Z`, `+02:00`).

    DRF's DateTimeField gives a timestamp without one the server's timezone
    before any validator sees it, so an event sent as local time would be
    stored hours off without a word."""

    default_error_messages = {
        "no_offset": "must carry a timezone offset (Z or ±hh:mm), e.g. 2026-01-05T10:00:00Z."
    }

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                self.fail("no_offset")
        return super().to_internal_value(value)
