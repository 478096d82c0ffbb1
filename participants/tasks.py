"""Periodic jobs of the participants app. Tasks take ids and may run twice."""

from participants.services import sla_sweep
from programs.jobs import periodic_job


@periodic_job("participants.sla_sweep")
def sla_sweep_task() -> dict:
    """Every minute: mark steps past due as overdue and open one sla_breach
    item per step (set-based, batched; idempotent, so a re-run is harmless),
    then schedule the reminders their definitions ask for."""
    from participants.services.reminders import overdue_reminders_schedule

    result = sla_sweep()
    result["reminders"] = overdue_reminders_schedule()
    return result


@periodic_job("participants.metrics_snapshot")
def metrics_snapshot_task(days_back: int = 1) -> dict:
    """Daily (00:15 UTC): upsert each running program's ProgramMetricsSnapshot
    for yesterday (final) and today (provisional). Idempotent: a re-run
    recomputes the same rows."""
    from participants.services.metrics import metrics_snapshot_all

    return {"snapshots": metrics_snapshot_all(days_back=days_back)}
