"""OpsException admin polish: filters, capped counts, FSM buttons through services."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from programs.actors import Actor
from programs.admin import CappedCountPaginator
from programs.models import AuditEvent, ExceptionState, OpsException
from programs.services import exception_raise, exception_snooze

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")


def raise_item(org, key):
    return exception_raise(organization=org, kind="manual", title=key, dedup_key=key, actor=SYSTEM)[
        0
    ]


def test_changelist_filters_overdue_and_links_to_the_console(client, org, lead):
    # given
    late = raise_item(org, "late")
    raise_item(org, "fresh")
    OpsException.objects.filter(pk=late.pk).update(due_by=timezone.now() - timedelta(hours=1))
    client.force_login(lead)
    # when
    response = client.get(reverse("admin:programs_opsexception_changelist"), {"sla": "overdue"})
    # then
    assert response.status_code == 200
    assert [o.pk for o in response.context["cl"].result_list] == [late.pk]
    assert reverse("console:item", args=[late.pk]).encode() in response.content


def test_wake_button_reopens_a_snoozed_item_through_the_service(client, org, lead):
    # given
    item = raise_item(org, "a")
    exception_snooze(exception_id=item.pk, actor=SYSTEM, until=timezone.now() + timedelta(days=1))
    client.force_login(lead)
    # when
    response = client.post(
        reverse("admin:programs_opsexception_transition", args=[item.pk, "wake"])
    )
    # then
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.state == ExceptionState.OPEN
    assert AuditEvent.objects.filter(action="exception.wake", actor_label=lead.username).exists()


def test_changelist_count_is_capped(org, monkeypatch):
    # given
    for i in range(5):
        raise_item(org, f"k{i}")
    monkeypatch.setattr(CappedCountPaginator, "CAP", 3)
    # when
    paginator = CappedCountPaginator(OpsException.objects.order_by("pk"), 2)
    # then
    assert paginator.count == 3
    assert paginator.num_pages == 2
