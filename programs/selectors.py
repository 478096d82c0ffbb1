"""Reads of the programs app."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from programs.models import JobHeartbeat, OpsException
from programs.registries import registry


def queue_backlog() -> dict:
    """Tasks waiting in the broker and the age of the oldest (ORM broker)."""
    from django_q.brokers import get_broker

    broker = get_broker()
    result = {"broker": settings.Q_BROKER, "size": None, "oldest_age_seconds": None}
    try:
        result["size"] = broker.queue_size()
    except Exception as exc:  # a broker that cannot answer is reported, not raised
        result["error"] = exc.__class__.__name__
        return result
    if settings.Q_BROKER == "orm":
        from django_q.models import OrmQ

        oldest = OrmQ.objects.filter(key=broker.list_key).order_by("id").first()
        if oldest is not None:
            enqueued = oldest.task.get("enqueued_at") or oldest.task.get("started")
            if enqueued is not None:
                result["oldest_age_seconds"] = round((timezone.now() - enqueued).total_seconds(), 1)
    return result


def sweep_heartbeats() -> dict:
    """Last start/finish of every registered periodic job."""
    beats = {b.name: b for b in JobHeartbeat.objects.filter(name__in=registry.schedules)}
    out = {}
    for name in sorted(registry.schedules):
        beat = beats.get(name)
        out[name] = {
            "last_finished_at": beat.last_finished_at if beat else None,
            "ok": beat.last_ok if beat else None,
        }
    return out


def exceptions_for_subject(subject) -> list[OpsException]:
    subject_type = f"{subject._meta.app_label}.{subject._meta.model_name}"
    return list(
        OpsException.objects.filter(subject_type=subject_type, subject_id=str(subject.pk))
        .select_related("assignee")
        .order_by("-first_seen_at")
    )
