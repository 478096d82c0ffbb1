"""The outbox's after-commit batching and its public API for rows written by
raw SQL (`outbox_announce`) and for bulk writers (`outbox_wanted`).

Rule under test: the hooks get every committed id exactly once, and never an
id whose transaction or savepoint rolled back. Tests marked
`transaction=True` commit for real; the others use Django's on_commit
capture inside the test transaction.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from integrations import outbox as outbox_module
from integrations.delivery_setup import webhook_interest
from integrations.models import OutboxEvent, WebhookEndpoint
from integrations.outbox import outbox_announce, outbox_wanted, outbox_write

OPENED = "programs.exception.opened"
OVERDUE = "participants.step.overdue"


class Boom(Exception):
    pass


@pytest.fixture
def calls(monkeypatch):
    """One recording hook in place of the real ones; each call's ids."""
    received: list[list[int]] = []
    monkeypatch.setattr(outbox_module, "_after_commit_hooks", [received.append])
    monkeypatch.setattr(outbox_module, "_hook_interests", {})
    return received


def _write(org):
    return outbox_write(organization=org, event_type_name=OPENED, payload={"n": 1}).pk


def _raw_row(org) -> int:
    """An outbox row inserted without outbox_write (as the SLA sweep's SQL does)."""
    return OutboxEvent.objects.bulk_create(
        [OutboxEvent(organization=org, event_type=OVERDUE, payload={"raw": True})]
    )[0].pk


@pytest.mark.django_db(transaction=True)
def test_announced_rows_join_the_transactions_batch_after_commit(org, calls):
    # given a transaction writing one event the usual way and one by "raw SQL"
    with transaction.atomic():
        written = _write(org)
        raw = _raw_row(org)
        outbox_announce([raw])
        # then nothing is announced before commit
        assert calls == []

    # and after commit the hooks get both, in one call, in write order
    assert calls == [[written, raw]]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_announces_nothing_and_the_next_one_starts_clean(org, calls):
    # given a transaction that announces a row and then fails
    with pytest.raises(Boom), transaction.atomic():
        outbox_announce([_raw_row(org)])
        raise Boom

    # when the next transaction (same connection, same nesting level) announces
    with transaction.atomic():
        raw = _raw_row(org)
        outbox_announce([raw])

    # then only the committed row reaches the hooks (the dropped batch of the
    # first transaction is not reused, so nothing is lost or leaked)
    assert calls == [[raw]]


@pytest.mark.django_db(transaction=True)
def test_rows_of_a_rolled_back_savepoint_are_never_announced(org, calls):
    # given a transaction whose outer part commits and whose savepoint rolls back
    with transaction.atomic():
        before = _write(org)
        with pytest.raises(Boom), transaction.atomic():
            doomed = _raw_row(org)
            outbox_announce([doomed])
            raise Boom
        after = _write(org)

    # then only the outer rows are announced, the savepoint's never
    announced = [pk for call in calls for pk in call]
    assert announced == [before, after]
    # (SQLite may give the rolled back row's id to `after`: check by content)
    assert set(OutboxEvent.objects.values_list("event_type", flat=True)) == {OPENED}
    assert doomed not in announced or doomed == after


@pytest.mark.django_db(transaction=True)
def test_a_released_savepoint_keeps_its_rows_and_later_rows_share_the_batch(org, calls):
    # given a savepoint that writes first and is released, then outer writes
    with transaction.atomic():
        with transaction.atomic():
            inner = _raw_row(org)
            outbox_announce([inner])
        outer = _write(org)

    # then all rows are announced once, in one call (a released savepoint
    # cannot roll back any more, so its batch is safe to extend)
    assert calls == [[inner, outer]]


@pytest.mark.django_db(transaction=True)
def test_outer_rollback_drops_rows_of_released_savepoints_too(org, calls):
    with pytest.raises(Boom), transaction.atomic():
        with transaction.atomic():
            outbox_announce([_raw_row(org)])
        _write(org)
        raise Boom
    assert calls == []


def test_writes_inside_a_savepoint_do_not_join_an_outer_batch(
    org, calls, django_capture_on_commit_callbacks
):
    # given a batch already pending from an earlier write of the test transaction
    _write(org)

    # when a service's own atomic block announces rows inside the capture
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        raw = _raw_row(org)
        outbox_announce([raw])

    # then they form their own batch (registered inside the savepoint, so its
    # rollback would drop them), which the capture sees and runs
    assert len(callbacks) == 1
    assert calls == [[raw]]


def test_announce_needs_the_writing_transaction(calls):
    # (no database fixture: outside any transaction, as a task would run)
    with pytest.raises(RuntimeError):
        outbox_announce([1])


@pytest.mark.django_db
def test_announce_without_hooks_or_ids_does_nothing(monkeypatch):
    monkeypatch.setattr(outbox_module, "_after_commit_hooks", [])
    outbox_announce([1])  # no hook: nothing to do, not even a transaction check
    with transaction.atomic():
        outbox_announce([])


def test_wanted_asks_each_hooks_interest(monkeypatch):
    # given one hook interested in opened events of organization 1 only
    def hook(ids):
        pass

    asked = []

    def interest(organization_ids, event_types):
        asked.append((set(organization_ids), set(event_types)))
        return {(1, OPENED), (3, OPENED)}

    monkeypatch.setattr(outbox_module, "_after_commit_hooks", [])
    monkeypatch.setattr(outbox_module, "_hook_interests", {})
    outbox_module.register_after_commit_hook(hook, interest=interest)

    # then only pairs asked about and wanted come back, from one question
    pairs = {(1, OPENED), (1, OVERDUE), (2, OPENED)}
    assert outbox_wanted(pairs) == {(1, OPENED)}
    assert asked == [({1, 2}, {OPENED, OVERDUE})]

    # and a hook without a declared interest wants everything
    outbox_module.register_after_commit_hook(lambda ids: None)
    assert outbox_wanted(pairs) == pairs


def test_wanted_without_hooks_is_empty(monkeypatch):
    monkeypatch.setattr(outbox_module, "_after_commit_hooks", [])
    assert outbox_wanted({(1, OPENED)}) == set()


@pytest.mark.django_db
def test_webhook_interest_follows_enabled_endpoints_subscriptions(org, other_org):
    # given: org has an endpoint for participants.* and a disabled catch-all;
    # other_org has no endpoint
    def endpoint(organization, event_types, enabled=True):
        return WebhookEndpoint.objects.create(
            organization=organization,
            partner_name="p",
            url="https://partner.example/hook",
            event_types=event_types,
            enabled=enabled,
            secret="s",
        )

    endpoint(org, ["participants.*"])
    endpoint(org, [], enabled=False)

    # then only the subscribed type of org is wanted
    wanted = webhook_interest({org.pk, other_org.pk}, {OPENED, OVERDUE})
    assert wanted == {(org.pk, OVERDUE)}
    assert webhook_interest({org.pk}, {OPENED, OVERDUE}) == {(org.pk, OVERDUE)}
    assert webhook_interest({other_org.pk}, {OPENED, OVERDUE}) == set()

    # and an endpoint with no filter wants every type
    endpoint(other_org, [])
    wanted = webhook_interest({org.pk, other_org.pk}, {OPENED, OVERDUE})
    assert wanted == {(org.pk, OVERDUE), (other_org.pk, OPENED), (other_org.pk, OVERDUE)}


def test_the_webhook_hook_declares_its_interest():
    from integrations.dispatch import after_commit

    assert outbox_module._hook_interests.get(after_commit) is webhook_interest


@pytest.mark.django_db(transaction=True)
def test_bulk_writes_skip_the_fanout_only_for_events_nobody_receives(org, other_org):
    # given: the real webhook hook; org's partner subscribes to participants.*,
    # other_org has no endpoint
    from integrations.dispatch import fanout
    from integrations.models import Delivery
    from integrations.outbox import outbox_write_many

    WebhookEndpoint.objects.create(
        organization=org,
        partner_name="p",
        url="https://partner.example/hook",
        event_types=["participants.*"],
        secret="s",
    )
    announced: list[list[int]] = []
    real_fanout = outbox_module._after_commit_hooks[0]

    def recording(ids):
        announced.append(list(ids))

    # when: one bulk write mixes a wanted event with two nobody receives
    with transaction.atomic():
        written = outbox_write_many(
            [
                {"organization": org, "event_type_name": OVERDUE, "payload": {"step_id": 1}},
                {"organization": org, "event_type_name": OPENED, "payload": {"exception_id": 2}},
                {"organization": other_org, "event_type_name": OVERDUE, "payload": {"step_id": 3}},
            ]
        )
        outbox_module._after_commit_hooks.insert(0, recording)
    outbox_module._after_commit_hooks.remove(recording)
    # then: rows keep their order and payloads; only the wanted one is announced
    # and fanned out; the others are stored already dispatched (what the
    # fan-out would do finding no endpoint), so no after-commit work is spent
    rows = {row.pk: row for row in OutboxEvent.objects.filter(pk__in=[w.pk for w in written])}
    assert [rows[w.pk].payload for w in written] == [
        {"step_id": 1},
        {"exception_id": 2},
        {"step_id": 3},
    ]
    assert announced == [[written[0].pk]]
    assert rows[written[0].pk].dispatched_at is not None  # by the real fan-out
    assert rows[written[1].pk].dispatched_at is not None
    assert rows[written[2].pk].dispatched_at is not None
    assert list(Delivery.objects.values_list("event_id", flat=True)) == [written[0].pk]
    assert fanout() == 0  # nothing left for the periodic sweep
    assert real_fanout in outbox_module._after_commit_hooks


@pytest.mark.django_db(transaction=True)
def test_a_single_write_nobody_receives_is_stored_dispatched_and_not_announced(org, other_org):
    # given: the real webhook hook; only org's partner subscribes (to participants.*)
    from integrations.models import Delivery

    WebhookEndpoint.objects.create(
        organization=org,
        partner_name="p",
        url="https://partner.example/hook",
        event_types=["participants.*"],
        secret="s",
    )
    # when: one event each that the partner wants, and two it does not
    with transaction.atomic():
        wanted = outbox_write(organization=org, event_type_name=OVERDUE, payload={"step_id": 1})
        other_type = _write(org)
        other_org_event = outbox_write(
            organization=other_org, event_type_name=OVERDUE, payload={"step_id": 2}
        )
    # then: the wanted one went through the after-commit fan-out (a delivery);
    # the others were stored dispatched at insert, with no delivery
    assert list(Delivery.objects.values_list("event_id", flat=True)) == [wanted.pk]
    stored = OutboxEvent.objects.in_bulk([wanted.pk, other_type, other_org_event.pk])
    assert all(event.dispatched_at is not None for event in stored.values())
    assert other_org_event.dispatched_at is not None
