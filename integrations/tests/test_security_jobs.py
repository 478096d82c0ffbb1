"""The scheduled warning about API keys expiring within 14 days."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.auth import api_client_create, api_client_revoke
from integrations.security_jobs import JOB, KIND, warn_expiring_api_keys
from programs.actors import Actor
from programs.models import OpsException
from programs.registries import registry

SYSTEM = Actor.system("test")


def key(org, name, days):
    client, _raw = api_client_create(
        organization=org,
        name=name,
        actor=SYSTEM,
        expires_at=timezone.now() + timedelta(days=days) if days is not None else None,
    )
    return client


@pytest.mark.django_db
def test_keys_expiring_within_14_days_open_one_item_each_and_reruns_open_nothing(org):
    # given
    soon = key(org, "EHR referrals", 10)
    key(org, "Far away", 40)
    key(org, "Never expires", None)
    # when
    first = warn_expiring_api_keys()
    second = warn_expiring_api_keys()
    # then
    [item] = OpsException.objects.filter(kind=KIND)
    assert item.subject_id == str(soon.pk)
    assert "EHR referrals" in item.title and "expires in" in item.title
    assert item.occurrences == 2
    assert first["opened"] == 1 and second["opened"] == 0


@pytest.mark.django_db
def test_revoking_the_key_resolves_its_warning(org):
    soon = key(org, "EHR referrals", 3)
    warn_expiring_api_keys()
    api_client_revoke(client_id=soon.pk, actor=SYSTEM, reason="rotated")
    result = warn_expiring_api_keys()
    item = OpsException.objects.get(kind=KIND)
    assert item.state == "resolved" and item.auto_resolved
    assert result["resolved"] == 1


@pytest.mark.django_db
def test_kind_and_daily_schedule_are_registered():
    assert KIND in registry.exception_kinds
    assert registry.schedules[JOB].cron == "0 6 * * *"
