from django.apps import AppConfig


class ParticipantsConfig(AppConfig):
    name = "participants"
    verbose_name = "Participants and enrollments"

    def ready(self):
        from participants import event_types, receivers, step_kinds, timeline
        from programs.registries import register_schedule, register_timeline_contributor

        event_types.register_all()
        step_kinds.register_defaults()
        register_timeline_contributor(timeline.enrollment_timeline)
        register_schedule(
            "participants.metrics_snapshot",
            "participants.tasks.metrics_snapshot_task",
            cron="15 0 * * *",
            description="Record yesterday's (and today's so far) strain metrics per program.",
        )
        try:
            from messaging.signals import message_status_changed
        except ImportError:  # messaging not landed yet
            return
        from participants.message_steps import schedule_step_message

        step_kinds.register_step_kind_handler("message", schedule_step_message)
        message_status_changed.connect(
            receivers.on_message_status_changed, dispatch_uid="participants_message_status"
        )
