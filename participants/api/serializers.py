"""Input and output serializers of the partner endpoints of the participants app.

Inputs list exactly the fields a partner may send; anything else (`state`,
`organization`, `id`...) is ignored, never written. Outputs list exactly the
fields a partner may see.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import available_timezones

from django.utils import timezone
from rest_framework import serializers

from integrations.api.fields import ChoiceField, OffsetDateTimeField
from participants.models import (
    TRANSITION_PAST,
    Enrollment,
    EnrollmentState,
    EventDisposition,
    ParticipantEvent,
    StepInstance,
)

REF_HELP = "Your opaque reference for the person (never a name, MRN or other identifier)."
_TIMEZONES = frozenset(available_timezones())
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


# --- inputs ---------------------------------------------------------------------------


class ReferralInputSerializer(serializers.Serializer):
    program = serializers.SlugField(max_length=50, help_text="Program slug.")
    external_ref = serializers.CharField(max_length=200, help_text=REF_HELP)
    source_system = serializers.CharField(max_length=100, required=False, allow_blank=True)
    timezone = serializers.CharField(
        max_length=64, required=False, allow_blank=True, help_text="IANA timezone name."
    )
    locale = serializers.CharField(max_length=20, required=False, allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, max_length=20
    )

    def validate_timezone(self, value):
        if value and value not in _TIMEZONES:
            raise serializers.ValidationError("not a known IANA timezone")
        return value


class TransitionInputSerializer(serializers.Serializer):
    transition = ChoiceField(choices=list(TRANSITION_PAST))
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True)


class EventInputSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=200, help_text="Your event id; idempotent per org.")
    type = serializers.RegexField(
        EVENT_TYPE_PATTERN,
        max_length=100,
        help_text="Dotted event type, e.g. device.shipped.",
    )
    external_ref = serializers.CharField(max_length=200, help_text=REF_HELP)
    occurred_at = OffsetDateTimeField(help_text="ISO 8601 with an offset.")
    data = serializers.DictField(required=False, help_text="Operational fields only; no PHI.")


class EventBatchInputSerializer(serializers.Serializer):
    # Items are checked one by one (each gets its own result): an item that
    # is no object is that item's 422, not the whole batch's.
    events = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=500, help_text="1-500 events."
    )


class EnrollmentFilterSerializer(serializers.Serializer):
    program = serializers.SlugField(required=False, max_length=50)
    state = ChoiceField(choices=EnrollmentState.values, required=False)
    external_ref = serializers.CharField(required=False, max_length=200)
    updated_after = serializers.DateTimeField(required=False)


# --- outputs ---------------------------------------------------------------------------


class StepOutputSerializer(serializers.ModelSerializer):
    key = serializers.CharField(source="step_key")
    stage = serializers.CharField(source="stage_key")

    class Meta:
        model = StepInstance
        fields = [
            "key",
            "title",
            "kind",
            "stage",
            "required",
            "state",
            "completes_on",
            "due_at",
            "completed_at",
        ]
        read_only_fields = fields


class EnrollmentOutputSerializer(serializers.ModelSerializer):
    external_ref = serializers.CharField(source="participant.external_ref")
    program = serializers.CharField(source="program.slug")
    program_version = serializers.IntegerField(source="program_version.number")

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "external_ref",
            "program",
            "program_version",
            "state",
            "state_changed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EnrollmentDetailOutputSerializer(EnrollmentOutputSerializer):
    steps = StepOutputSerializer(many=True)
    allowed_transitions = serializers.SerializerMethodField(
        help_text="Transitions this key may run now."
    )

    class Meta(EnrollmentOutputSerializer.Meta):
        fields = [*EnrollmentOutputSerializer.Meta.fields, "steps", "allowed_transitions"]
        read_only_fields = fields

    def get_allowed_transitions(self, enrollment) -> list[str]:
        return self.context.get("allowed_transitions", [])


class EventOutputSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="event_id")
    type = serializers.CharField(source="event_type")
    status = serializers.SerializerMethodField()
    disposition = ChoiceField(choices=EventDisposition.choices)

    class Meta:
        model = ParticipantEvent
        fields = [
            "id",
            "type",
            "external_ref",
            "occurred_at",
            "received_at",
            "status",
            "disposition",
        ]
        read_only_fields = fields

    def get_status(self, event) -> str:
        return "accepted"


class EventBatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.CharField(allow_null=True)
    status = serializers.IntegerField(help_text="202 accepted, 422 rejected, 409 conflict.")
    event = EventOutputSerializer(required=False)
    errors = serializers.ListField(child=serializers.DictField(), required=False)


class EventBatchOutputSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = EventBatchItemResultSerializer(many=True)


# --- fast paths of the event endpoints ---------------------------------------------------
# The event endpoints run these per item (up to 500 a request). Building a DRF
# serializer per item costs more than the rest of the work, so the common,
# valid case is checked here with the same rules; anything these do not
# accept goes through EventInputSerializer, which produces the errors.

_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


def _plain_text(value, max_length: int) -> bool:
    # what CharField accepts unchanged: a non-blank str, no surrounding
    # whitespace (it would be trimmed), no NUL, no surrogates (ASCII is free of both)
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and value == value.strip()
    )


def event_input_fast(data) -> dict | None:
    """EventInputSerializer's validated_data for a plainly valid event, else None
    (then run the serializer, which accepts or explains)."""
    if not isinstance(data, dict):
        return None
    event_id, event_type, ref = data.get("id"), data.get("type"), data.get("external_ref")
    if not (
        _plain_text(event_id, 200)
        and _plain_text(event_type, 100)
        and _EVENT_TYPE.search(event_type)
        and _plain_text(ref, 200)
    ):
        return None
    occurred_at = data.get("occurred_at")
    if not isinstance(occurred_at, str):
        return None
    # DateTimeField.to_internal_value parses with datetime.fromisoformat first
    # (django.utils.dateparse) and converts an aware value to the current
    # timezone; the same two steps without the field's overhead. Naive or
    # unusual values go to the serializer.
    try:
        parsed = datetime.fromisoformat(occurred_at)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return None
        occurred_at = parsed.astimezone(timezone.get_current_timezone())
    except (ValueError, OverflowError):
        return None
    values = {"id": event_id, "type": event_type, "external_ref": ref, "occurred_at": occurred_at}
    if "data" in data:
        payload = data["data"]
        if not isinstance(payload, dict):
            return None
        values["data"] = {str(key): value for key, value in payload.items()}
    return values


def _iso(value: datetime) -> str:
    """DateTimeField().to_representation(value) for an aware datetime."""
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def event_output(event: ParticipantEvent) -> dict:
    """EventOutputSerializer(event).data, without building a serializer."""
    return {
        "id": event.event_id,
        "type": event.event_type,
        "external_ref": event.external_ref,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "status": "accepted",
        "disposition": event.disposition,
    }
