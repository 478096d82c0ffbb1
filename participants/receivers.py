"""Receivers for lower apps' signals (they cannot import participants)."""

from __future__ import annotations

import logging

from participants.models import StepInstance

logger = logging.getLogger(__name__)


def on_message_status_changed(sender, message, from_state="", to_state="", **kwargs):
    """A message for a `message` step progressed: complete the step when the
    status reaches the step's `complete_on` (inside messaging's transaction)."""
    from participants.services.steps import _MESSAGE_PROGRESS, step_complete_for_message

    step_id = getattr(message, "step_instance_id", None)
    if not step_id or getattr(message, "kind", "step") != "step":
        return
    if to_state not in _MESSAGE_PROGRESS:
        return
    try:
        step_complete_for_message(
            step_id=step_id, status=to_state, message_ref=f"message #{message.pk}"
        )
    except StepInstance.DoesNotExist:
        logger.warning("message %s names step %s, which does not exist", message.pk, step_id)
