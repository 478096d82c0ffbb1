"""Input and output serializers of /api/v1/webhook-endpoints/."""

from __future__ import annotations

from rest_framework import serializers

from integrations.models import WebhookEndpoint


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare (S2: `state`, `organization`,
    `secret`... are rejected with 422 naming the field)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field is not accepted here."] for name in unknown}
                )
        return super().to_internal_value(data)


class EventTypesField(serializers.ListField):
    child = serializers.CharField(max_length=100)


class WebhookEndpointCreateSerializer(StrictSerializer):
    partner_name = serializers.CharField(max_length=200)
    url = serializers.CharField(max_length=2000, help_text="https:// URL (checked for SSRF).")
    event_types = EventTypesField(
        required=False, max_length=100, help_text="Event type names; empty = all events."
    )
    enabled = serializers.BooleanField(required=False, default=True)
    retry_schedule = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=604800),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=20,
        help_text="Seconds before each attempt (first is 0); null = standard schedule.",
    )


class WebhookEndpointUpdateSerializer(StrictSerializer):
    partner_name = serializers.CharField(max_length=200, required=False)
    url = serializers.CharField(max_length=2000, required=False)
    event_types = EventTypesField(required=False, max_length=100)
    enabled = serializers.BooleanField(required=False)
    retry_schedule = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=604800),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=20,
    )


class RotateSecretSerializer(StrictSerializer):
    overlap_hours = serializers.IntegerField(
        min_value=0,
        max_value=720,
        required=False,
        default=24,
        help_text="How long the old secret keeps signing alongside the new one.",
    )


class WebhookEndpointOutputSerializer(serializers.ModelSerializer):
    previous_secret_valid_until = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "partner_name",
            "url",
            "event_types",
            "enabled",
            "disabled_reason",
            "retry_schedule",
            "breaker_state",
            "previous_secret_valid_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_previous_secret_valid_until(self, endpoint) -> str | None:
        if endpoint.previous_secret and endpoint.previous_secret_expires_at:
            return serializers.DateTimeField().to_representation(
                endpoint.previous_secret_expires_at
            )  # "…Z", as every other timestamp of the API
        return None


class WebhookEndpointCreatedSerializer(WebhookEndpointOutputSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The signing secret: shown only in this response."
    )

    class Meta(WebhookEndpointOutputSerializer.Meta):
        fields = [*WebhookEndpointOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True)
    previous_secret_valid_until = serializers.DateTimeField(read_only=True)


class TestEventSerializer(serializers.Serializer):
    event_id = serializers.IntegerField(read_only=True)
    webhook_id = serializers.CharField(read_only=True)
