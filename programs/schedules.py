"""Create or update django-q2 schedules from the code registry, idempotently."""

from __future__ import annotations

from django.db import transaction

from programs.registries import registry

MANAGED_PREFIXES = ("programs.", "participants.", "integrations.", "messaging.")


@transaction.atomic
def schedules_sync() -> dict:
    """Make the Schedule table match the registry.

    Registered jobs are created or updated in place (keyed by name); managed
    schedules no longer registered are deleted. Running twice changes nothing.
    """
    from django_q.models import Schedule

    created = updated = unchanged = 0
    for job in registry.schedules.values():
        wanted = {
            "func": job.func,
            "schedule_type": Schedule.CRON if job.cron else Schedule.MINUTES,
            "minutes": job.minutes,
            "cron": job.cron,
            "repeats": -1,
        }
        schedule = Schedule.objects.filter(name=job.name).first()
        if schedule is None:
            Schedule.objects.create(name=job.name, **wanted)
            created += 1
            continue
        changes = {k: v for k, v in wanted.items() if getattr(schedule, k) != v}
        if changes:
            for key, value in changes.items():
                setattr(schedule, key, value)
            schedule.save()
            updated += 1
        else:
            unchanged += 1
    stale = Schedule.objects.filter(
        name__regex=r"^(" + "|".join(p.replace(".", r"\.") for p in MANAGED_PREFIXES) + ")"
    ).exclude(name__in=list(registry.schedules))
    removed = stale.count()
    stale.delete()
    return {"created": created, "updated": updated, "unchanged": unchanged, "removed": removed}
