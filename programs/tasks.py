"""Periodic jobs of the programs app. Tasks take ids and may run twice."""

from django.utils import timezone

from programs.errors import TransitionNotAllowed
from programs.jobs import periodic_job
from programs.models import ExceptionState, OpsException
from programs.services import exception_wake


@periodic_job("programs.wake_snoozed_exceptions")
def wake_snoozed_exceptions(batch_size: int = 500) -> dict:
    """Reopen snoozed items whose `snoozed_until` has passed (audited per item)."""
    woken = 0
    while True:
        ids = list(
            OpsException.objects.filter(
                state=ExceptionState.SNOOZED, snoozed_until__lte=timezone.now()
            ).values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        for exception_id in ids:
            try:
                exception_wake(exception_id=exception_id)
                woken += 1
            except TransitionNotAllowed:
                pass  # someone resolved it meanwhile
        if len(ids) < batch_size:
            break
    return {"woken": woken}
