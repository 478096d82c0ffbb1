"""Receivers for lower apps' signals (they cannot import participants)."""

from __future__ import annotations

import logging

from participants.models import OPEN_STEP_STATES, StepInstance

logger = logging.getLogger(__name__)

# Set on a Message instance once its step is known to be missing, closed or
# not a `message` step, so the next status change of the same in-memory
# message (the dispatcher records sent then delivered) skips the lookup.
_NO_STEP_TO_COMPLETE = "_participants_no_step_to_complete"


def on_message_status_changed(sender, message, from_state="", to_state="", **kwargs):
    """A message for a `message` step progressed: complete the step when the
    status reaches the step's `complete_on` (inside messaging's transaction).

    `queued` never completes a step (`complete_on` is `sent` or `delivered`),
    so it costs no query."""
    from participants.services.steps import _MESSAGE_PROGRESS, step_complete_for_message

    step_id = getattr(message, "step_instance_id", None)
    if not step_id or getattr(message, "kind", "step") != "step":
        return
    if to_state not in _MESSAGE_PROGRESS or _MESSAGE_PROGRESS[to_state] < _MESSAGE_PROGRESS["sent"]:
        return
    if getattr(message, _NO_STEP_TO_COMPLETE, False):
        return
    try:
        step = step_complete_for_message(
            step_id=step_id, status=to_state, message_ref=f"message #{message.pk}"
        )
    except StepInstance.DoesNotExist:
        logger.warning("message %s names step %s, which does not exist", message.pk, step_id)
        setattr(message, _NO_STEP_TO_COMPLETE, True)
        return
    if step is not None and (step.kind != "message" or not step.is_open):
        setattr(message, _NO_STEP_TO_COMPLETE, True)


def on_message_status_batch(sender, messages, **kwargs):
    """Before a dispatch batch's per-change signals: look up all their steps
    in one query and mark the messages whose step cannot be completed
    (missing, closed, not a `message` step), so `on_message_status_changed`
    skips them without a query each."""
    step_ids = {
        m.step_instance_id
        for m in messages
        if m.step_instance_id and getattr(m, "kind", "step") == "step"
    }
    if not step_ids:
        return
    found = {
        pk: (kind, state)
        for pk, kind, state in StepInstance.objects.filter(pk__in=step_ids).values_list(
            "pk", "kind", "state"
        )
    }
    missing = sorted(step_ids - set(found))
    if missing:
        logger.warning(
            "%s messages name steps that do not exist (e.g. %s)", len(missing), missing[:5]
        )
    for message in messages:
        row = found.get(message.step_instance_id)
        if row is None or row[0] != "message" or row[1] not in OPEN_STEP_STATES:
            setattr(message, _NO_STEP_TO_COMPLETE, True)


def _connect_batch_receiver() -> None:
    # Connected here (imported by ParticipantsConfig.ready) rather than in
    # apps.py; dispatch_uid keeps it single.
    from messaging.signals import message_status_batch

    message_status_batch.connect(on_message_status_batch, dispatch_uid="participants_message_batch")


_connect_batch_receiver()
