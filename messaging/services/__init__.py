"""Writes of the messaging app. Every meaningful write goes through one of these."""

from messaging.services.callbacks import callback_receive
from messaging.services.dispatch import messages_dispatch_due
from messaging.services.messages import (
    message_cancel,
    message_resend,
    message_schedule,
    message_schedule_reminder,
    message_switch_channel,
    messages_cancel_for_enrollment,
)
from messaging.services.optouts import opt_out_record, opt_out_revoke
from messaging.services.schedule import ScheduleRequest, messages_schedule_many, template_for
from messaging.services.templates import template_create, template_new_version, template_publish

__all__ = [
    "ScheduleRequest",
    "callback_receive",
    "message_cancel",
    "message_resend",
    "message_schedule",
    "message_schedule_reminder",
    "message_switch_channel",
    "messages_cancel_for_enrollment",
    "messages_dispatch_due",
    "messages_schedule_many",
    "opt_out_record",
    "opt_out_revoke",
    "template_create",
    "template_for",
    "template_new_version",
    "template_publish",
]
