import pytest
from django.core.management import call_command
from django_q.models import Schedule

from programs.registries import registry


@pytest.mark.django_db
def test_sync_schedules_is_idempotent(capsys):
    call_command("sync_schedules")
    first = {s.name: (s.func, s.minutes) for s in Schedule.objects.all()}
    call_command("sync_schedules")
    second = {s.name: (s.func, s.minutes) for s in Schedule.objects.all()}
    out = capsys.readouterr().out.splitlines()
    assert first == second
    assert set(first) >= set(registry.schedules)
    assert out[1].startswith("schedules: 0 created, 0 updated")


@pytest.mark.django_db
def test_sync_schedules_updates_changed_and_removes_stale():
    call_command("sync_schedules")
    Schedule.objects.filter(name="programs.wake_snoozed_exceptions").update(minutes=99)
    Schedule.objects.create(name="programs.retired_job", func="programs.tasks.nothing")
    Schedule.objects.create(name="someone-elses-job", func="x.y")
    call_command("sync_schedules")
    assert Schedule.objects.get(name="programs.wake_snoozed_exceptions").minutes == 1
    assert not Schedule.objects.filter(name="programs.retired_job").exists()
    assert Schedule.objects.filter(name="someone-elses-job").exists()  # not ours: untouched


@pytest.mark.django_db
def test_every_registered_job_points_at_an_importable_function():
    from django.utils.module_loading import import_string

    for job in registry.schedules.values():
        assert callable(import_string(job.func)), job.name


def test_healthz_answers_without_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_queue_and_jobs(client):
    from programs.tasks import wake_snoozed_exceptions

    wake_snoozed_exceptions()
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["queue"]["size"] == 0
    job = body["checks"]["jobs"]["programs.wake_snoozed_exceptions"]
    assert job["ok"] is True and job["last_finished_at"]
