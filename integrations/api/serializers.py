"""Output and input serializers of the integrations endpoints (programs, exceptions)."""

from __future__ import annotations

from rest_framework import serializers

from integrations.api.fields import ChoiceField
from programs.models import ExceptionState, OpsException, Program, Severity


class ProgramOutputSerializer(serializers.ModelSerializer):
    current_version = serializers.SerializerMethodField(
        help_text="Number of the newest published definition version."
    )

    class Meta:
        model = Program
        fields = ["slug", "name", "state", "timezone", "current_version"]
        read_only_fields = fields

    def get_current_version(self, program) -> int | None:
        versions = getattr(program, "published_numbers", None)
        if versions is not None:
            return max(versions) if versions else None
        version = program.latest_published_version()
        return version.number if version else None


class ExceptionOutputSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = OpsException
        fields = [
            "id",
            "kind",
            "severity",
            "state",
            "title",
            "program",
            "subject_type",
            "subject_id",
            "occurrences",
            "first_seen_at",
            "last_seen_at",
            "due_by",
            "resolved_at",
        ]
        read_only_fields = fields


class ExceptionFilterSerializer(serializers.Serializer):
    state = ChoiceField(
        choices=[*ExceptionState.values, "active"],
        required=False,
        help_text="`active` (default) = open, claimed or snoozed.",
    )
    program = serializers.SlugField(required=False, max_length=50)
    kind = serializers.CharField(required=False, max_length=40)
    severity = ChoiceField(choices=Severity.values, required=False)
