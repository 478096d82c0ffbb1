from django.apps import AppConfig

MESSAGE_STATES = (
    ("scheduled", "A message was scheduled (due after quiet hours)."),
    ("queued", "A due message was handed to the dispatcher."),
    ("sent", "The channel connector accepted a message."),
    ("delivered", "A message was reported delivered."),
    ("failed", "A message could not be sent."),
    ("undeliverable", "A message was permanently refused (unknown contact, blocked)."),
    ("suppressed", "A message was suppressed: opt-out, quiet hours past expiry, or cap."),
    ("canceled", "A message was canceled: the enrollment left the state that needed it."),
)


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self):
        import integrations.connectors  # noqa: F401  (registers console and webhook)
        from integrations.event_types import register_event_type
        from messaging import selectors
        from messaging.services import failures
        from programs.registries import (
            register_exception_kind,
            register_retry_action,
            register_schedule,
            register_timeline_contributor,
        )

        for state, description in MESSAGE_STATES:
            register_event_type(f"messaging.message.{state}", description)
        register_event_type(
            "messaging.participant.opted_out", "A participant opted out of a channel."
        )
        register_event_type(
            "messaging.participant.opted_in", "A participant's opt-out of a channel was revoked."
        )
        register_exception_kind(
            "message_failed",
            "Message failed",
            default_severity="medium",
            description="A message failed or was undeliverable; resend it or switch channel.",
        )
        register_retry_action(
            "message_failed",
            "Resend",
            failures.retry_resend,
            description="Sends the message again on the same channel; "
            "the item resolves itself once it is sent.",
        )
        register_retry_action(
            "message_failed",
            "Switch channel",
            failures.retry_switch_channel,
            description="Sends it on the participant's next channel that has a template "
            "and no opt-out; the item resolves itself once it is sent.",
        )
        register_schedule(
            "messaging.dispatch_due_messages",
            "messaging.tasks.dispatch_due_messages",
            minutes=1,
            description="Send due messages through their channel connectors; retry failures.",
        )
        register_timeline_contributor(selectors.timeline_rows_for_enrollment)
        try:
            from programs.registries import register_subject_context
        except ImportError:  # older programs without subject contexts
            return
        register_subject_context("messaging.message", selectors.message_subject_context)
