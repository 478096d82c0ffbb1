from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import OutboxEvent
from programs.actors import Actor
from programs.errors import TransitionNotAllowed
from programs.models import AuditEvent, OpsException
from programs.registries import register_retry_action
from programs.services import (
    exception_claim,
    exception_claim_next,
    exception_dismiss,
    exception_raise,
    exception_reassign,
    exception_release,
    exception_resolve,
    exception_resolve_for,
    exception_retry,
    exception_snooze,
)
from programs.tasks import wake_snoozed_exceptions

SYSTEM = Actor.system("test")


def raise_item(org, key="sync:42", **kwargs):
    return exception_raise(
        organization=org, kind="manual", title="Device never synced", dedup_key=key, **kwargs
    )


@pytest.mark.django_db
def test_raise_twice_bumps_occurrences_instead_of_opening_a_second_item(org):
    # given
    first, created_first = raise_item(org)
    # when
    second, created_second = raise_item(org)
    # then
    assert created_first and not created_second
    assert second.pk == first.pk
    assert second.occurrences == 2
    assert OpsException.objects.filter(organization=org).count() == 1
    assert second.last_seen_at >= first.first_seen_at


@pytest.mark.django_db
def test_same_dedup_key_in_another_organization_is_a_separate_item(org, other_org):
    raise_item(org)
    _, created = raise_item(other_org)
    assert created
    assert OpsException.objects.count() == 2


@pytest.mark.django_db
def test_raise_after_resolution_opens_a_fresh_item(org):
    item, _ = raise_item(org)
    exception_resolve(exception_id=item.pk, actor=SYSTEM, auto=True)
    again, created = raise_item(org)
    assert created and again.pk != item.pk


@pytest.mark.django_db
def test_due_by_follows_severity_sla(org, settings):
    item, _ = raise_item(org, severity="critical")
    assert item.priority == 4
    assert item.due_by - item.first_seen_at == settings.BATON_EXCEPTION_SLA["critical"]


@pytest.mark.django_db
def test_unknown_kind_is_refused_with_the_registered_kinds(org):
    with pytest.raises(ValueError, match=r"unknown exception kind 'nope'.*manual"):
        exception_raise(organization=org, kind="nope", title="x", dedup_key="x")


@pytest.mark.django_db
def test_auto_resolve_when_condition_clears_is_audited_and_emits_event(org):
    # given
    item, _ = raise_item(org)
    # when
    resolved = exception_resolve_for(organization=org, dedup_key="sync:42", actor=SYSTEM)
    # then
    assert resolved.state == "resolved" and resolved.auto_resolved
    audit = AuditEvent.objects.filter(object_id=str(item.pk), action="exception.auto_resolved")
    assert audit.count() == 1
    assert audit.get().from_state == "open" and audit.get().to_state == "resolved"
    assert OutboxEvent.objects.filter(event_type="programs.exception.resolved").count() == 1
    # a second clear is a no-op
    assert exception_resolve_for(organization=org, dedup_key="sync:42", actor=SYSTEM) is None


@pytest.mark.django_db
def test_opening_writes_audit_and_outbox_event(org):
    item, _ = raise_item(org)
    assert AuditEvent.objects.filter(action="exception.opened", object_id=str(item.pk)).exists()
    event = OutboxEvent.objects.get(event_type="programs.exception.opened")
    assert event.payload["exception_id"] == item.pk


@pytest.mark.django_db
def test_a_claimed_item_wakes_back_into_its_holders_queue(org, coordinator, client):
    # given: a coordinator snoozes an item they hold; before, waking made it
    # "open" but still assigned: in neither My queue nor Unassigned, and
    # out of reach of Claim next
    item, _ = raise_item(org)
    exception_claim(exception_id=item.pk, actor=coordinator)
    exception_snooze(
        exception_id=item.pk, actor=coordinator, until=timezone.now() + timedelta(hours=1)
    )
    OpsException.objects.filter(pk=item.pk).update(
        snoozed_until=timezone.now() - timedelta(seconds=1)
    )
    # when
    assert wake_snoozed_exceptions() == {"woken": 1}
    # then
    item.refresh_from_db()
    assert (item.state, item.assignee) == ("claimed", coordinator)
    wake = AuditEvent.objects.get(action="exception.wake", object_id=str(item.pk))
    assert (wake.from_state, wake.to_state) == ("snoozed", "claimed")
    client.force_login(coordinator)
    mine = client.get(reverse("console:queue", args=["mine"]))
    assert f"#{item.pk}" in mine.content.decode()


@pytest.mark.django_db
def test_an_open_item_left_with_an_assignee_is_in_its_holders_queue(org, coordinator, client):
    # given: an item an earlier wake left open but assigned
    item, _ = raise_item(org)
    OpsException.objects.filter(pk=item.pk).update(assignee=coordinator)
    # when
    client.force_login(coordinator)
    mine = client.get(reverse("console:queue", args=["mine"]))
    unassigned = client.get(reverse("console:queue", args=["unassigned"]))
    # then
    assert f"#{item.pk}" in mine.content.decode()
    assert f"#{item.pk}" not in unassigned.content.decode()


@pytest.mark.django_db
def test_full_lifecycle_claim_release_snooze_wake_resolve(org, coordinator):
    item, _ = raise_item(org)
    item = exception_claim(exception_id=item.pk, actor=coordinator)
    assert item.state == "claimed" and item.assignee == coordinator
    item = exception_release(exception_id=item.pk, actor=coordinator)
    assert item.state == "open" and item.assignee is None
    item = exception_snooze(
        exception_id=item.pk, actor=coordinator, until=timezone.now() + timedelta(hours=1)
    )
    assert item.state == "snoozed"
    assert wake_snoozed_exceptions() == {"woken": 0}
    OpsException.objects.filter(pk=item.pk).update(
        snoozed_until=timezone.now() - timedelta(seconds=1)
    )
    assert wake_snoozed_exceptions() == {"woken": 1}
    item.refresh_from_db()
    assert item.state == "open"
    item = exception_resolve(exception_id=item.pk, actor=coordinator, note="called partner")
    assert item.state == "resolved" and item.resolution_note == "called partner"
    actions = list(
        AuditEvent.objects.filter(object_type="programs.opsexception", object_id=str(item.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "exception.opened",
        "exception.claim",
        "exception.release",
        "exception.snooze",
        "exception.wake",
        "exception.resolved",
    ]


@pytest.mark.django_db
def test_closed_items_accept_no_further_actions(org, coordinator):
    item, _ = raise_item(org)
    exception_dismiss(exception_id=item.pk, actor=coordinator, reason="duplicate of #1")
    dismissal = AuditEvent.objects.get(object_id=str(item.pk), to_state="dismissed")
    assert dismissal.action == "exception.dismissed"  # was written "exception.dismissd"
    with pytest.raises(TransitionNotAllowed, match="it is already dismissed"):
        exception_claim(exception_id=item.pk, actor=coordinator)
    with pytest.raises(TransitionNotAllowed):
        exception_resolve(exception_id=item.pk, actor=coordinator, note="x")


@pytest.mark.django_db
def test_resolve_and_dismiss_need_words(org, coordinator):
    item, _ = raise_item(org)
    with pytest.raises(ValueError, match="note"):
        exception_resolve(exception_id=item.pk, actor=coordinator, note="  ")
    with pytest.raises(ValueError, match="reason"):
        exception_dismiss(exception_id=item.pk, actor=coordinator, reason="")
    with pytest.raises(ValueError, match="future"):
        exception_snooze(exception_id=item.pk, actor=coordinator, until=timezone.now())
    item.refresh_from_db()
    assert item.state == "open"


@pytest.mark.django_db
def test_claim_next_takes_highest_priority_then_oldest(org, coordinator):
    low, _ = raise_item(org, key="a", severity="low")
    old_high, _ = raise_item(org, key="b", severity="high")
    new_high, _ = raise_item(org, key="c", severity="high")
    got = [exception_claim_next(user=coordinator, organization_ids={org.pk}) for _ in range(4)]
    assert [g.pk if g else None for g in got] == [old_high.pk, new_high.pk, low.pk, None]


@pytest.mark.django_db
def test_claim_next_stays_inside_the_callers_organizations(org, other_org, coordinator):
    raise_item(other_org)
    assert exception_claim_next(user=coordinator, organization_ids={org.pk}) is None


@pytest.mark.django_db
def test_reassign_moves_an_item_between_people(org, coordinator, lead):
    item, _ = raise_item(org)
    item = exception_reassign(exception_id=item.pk, actor=lead, assignee=coordinator)
    assert item.state == "claimed" and item.assignee == coordinator
    item = exception_reassign(exception_id=item.pk, actor=lead, assignee=lead)
    assert item.assignee == lead


@pytest.mark.django_db
def test_retry_runs_the_registered_action_and_is_audited(org, coordinator):
    calls = []

    def replay(exception, actor):
        calls.append((exception.pk, actor.label))
        return "re-queued 1 delivery"

    register_retry_action("test_retryable", "Replay", replay)
    from programs.registries import register_exception_kind

    register_exception_kind("test_retryable", "Retryable (test)")
    item, _ = exception_raise(organization=org, kind="test_retryable", title="x", dedup_key="r:1")
    outcome = exception_retry(exception_id=item.pk, actor=coordinator)
    assert outcome == "re-queued 1 delivery"
    assert calls == [(item.pk, coordinator.username)]
    assert AuditEvent.objects.filter(action="exception.retried", object_id=str(item.pk)).exists()


@pytest.mark.django_db
def test_retry_is_refused_where_no_action_is_registered(org, coordinator):
    item, _ = raise_item(org)
    with pytest.raises(TransitionNotAllowed, match="cannot retry"):
        exception_retry(exception_id=item.pk, actor=coordinator)
