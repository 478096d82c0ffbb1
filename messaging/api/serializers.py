from rest_framework import serializers

from integrations.api.fields import ChoiceField
from integrations.connectors import CALLBACK_TYPES


class CallbackInputSerializer(serializers.Serializer):
    """Baton's vendor callback format (documentation; the view verifies raw bytes)."""

    type = ChoiceField(choices=CALLBACK_TYPES)
    message_id = serializers.IntegerField(required=False, help_text="Baton's message id.")
    vendor_message_id = serializers.CharField(required=False, max_length=200)
    participant_ref = serializers.CharField(
        required=False, max_length=200, help_text="Opt-outs without a message id."
    )
    channel = serializers.CharField(required=False, max_length=20)
    error = serializers.CharField(required=False, max_length=500)


class StrippedFieldSerializer(serializers.Serializer):
    path = serializers.CharField()
    kind = serializers.CharField()


class CallbackOutputSerializer(serializers.Serializer):
    status = ChoiceField(choices=["applied", "duplicate", "ignored"])
    detail = serializers.CharField()
    message_id = serializers.IntegerField(allow_null=True)
    stripped = StrippedFieldSerializer(many=True)
