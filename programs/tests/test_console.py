"""The operations console queue: what coordinators, leads and auditors see and do."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from programs.actors import Actor
from programs.models import AuditEvent, ExceptionState, OpsException
from programs.registries import register_retry_action, registry
from programs.services import exception_claim, exception_raise

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")


def raise_item(org, key, *, severity="medium", program=None, title=None, kind="manual"):
    item, _ = exception_raise(
        organization=org,
        kind=kind,
        title=title or f"Item {key}",
        dedup_key=key,
        severity=severity,
        program=program,
        actor=SYSTEM,
    )
    return item


def login(client, user):
    client.force_login(user)
    return client


def test_unassigned_queue_lists_items_by_priority_then_age(client, org, coordinator):
    # given
    low = raise_item(org, "a", severity="low")
    crit = raise_item(org, "b", severity="critical")
    high_old = raise_item(org, "c", severity="high")
    high_new = raise_item(org, "d", severity="high")
    OpsException.objects.filter(pk=high_old.pk).update(
        first_seen_at=timezone.now() - timedelta(hours=5)
    )
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["unassigned"]))
    # then
    assert response.status_code == 200
    ids = [i.pk for i in response.context["items"]]
    assert ids == [crit.pk, high_old.pk, high_new.pk, low.pk]
    assert str(response.context["counts"]["unassigned"]) == "4"
    assert b"Critical" in response.content


def test_filters_narrow_the_list_and_show_counts(client, org, coordinator, program):
    # given
    raise_item(org, "a", severity="low", program=program)
    keep = raise_item(org, "b", severity="high", program=program)
    raise_item(org, "c", severity="high")
    old = raise_item(org, "d", severity="high", program=program)
    OpsException.objects.filter(pk=old.pk).update(
        first_seen_at=timezone.now() - timedelta(days=3), due_by=timezone.now() - timedelta(days=2)
    )
    login(client, coordinator)
    # when
    response = client.get(
        reverse("console:queue", args=["open"]),
        {"severity": "high", "program": program.pk, "age": "lt1h", "due": "ontime"},
    )
    # then
    assert [i.pk for i in response.context["items"]] == [keep.pk]
    facets = response.context["facets"]
    assert facets["severity"]["high"] == 1
    # and the overdue filter finds the old one
    response = client.get(reverse("console:queue", args=["open"]), {"due": "overdue"})
    assert [i.pk for i in response.context["items"]] == [old.pk]


def test_bad_filter_values_are_ignored_with_a_message_not_an_error(client, org, coordinator):
    # given
    raise_item(org, "a")
    login(client, coordinator)
    # when
    response = client.get(
        reverse("console:queue", args=["open"]),
        {"severity": "apocalyptic", "program": "x'; drop", "age": "old", "page": "nope"},
    )
    # then
    assert response.status_code == 200
    assert len(response.context["items"]) == 1
    assert b"unknown severity" in response.content


@pytest.mark.parametrize("program_param", ["²", "99999999999999999999"])
def test_a_program_filter_no_program_can_match_answers_with_an_empty_queue(
    client, org, coordinator, program, program_param
):
    # given: '²' is a digit that int() refuses; the other is beyond any id
    raise_item(org, "a", program=program)
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["open"]), {"program": program_param})
    # then
    assert response.status_code == 200
    if program_param == "²":
        assert b"program must be a number" in response.content
        assert len(response.context["items"]) == 1
    else:
        assert response.context["items"] == []
        assert str(response.context["facets"]["total"]) == "0"


@pytest.mark.parametrize("program_param", ["²", "99999999999999999999", "9" * 5000])
def test_claim_next_for_a_program_no_item_can_belong_to_claims_nothing(
    client, org, coordinator, program_param
):
    # given
    raise_item(org, "a")
    login(client, coordinator)
    # when
    response = client.post(reverse("console:claim_next"), {"program": program_param}, follow=True)
    # then
    assert response.status_code == 200
    if program_param == "²":  # not a number: no program filter, so the item is claimed
        assert OpsException.objects.get().state == ExceptionState.CLAIMED
    else:
        assert b"Nothing to claim" in response.content
        assert OpsException.objects.get().state == ExceptionState.OPEN


def test_counts_are_capped(client, org, coordinator, monkeypatch):
    # given
    from programs.console import selectors

    monkeypatch.setattr(selectors, "COUNT_CAP", 3)
    for i in range(5):
        raise_item(org, f"k{i}")
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["unassigned"]))
    # then
    assert str(response.context["counts"]["unassigned"]) == "3+"


def test_my_queue_shows_only_my_claimed_items(client, org, coordinator, lead):
    # given
    mine = raise_item(org, "a")
    theirs = raise_item(org, "b")
    raise_item(org, "c")
    exception_claim(exception_id=mine.pk, actor=coordinator)
    exception_claim(exception_id=theirs.pk, actor=lead)
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["mine"]))
    # then
    assert [i.pk for i in response.context["items"]] == [mine.pk]


def test_claim_next_hands_out_the_most_urgent_unclaimed_item(client, org, coordinator):
    # given
    raise_item(org, "a", severity="low")
    crit = raise_item(org, "b", severity="critical")
    login(client, coordinator)
    # when
    response = client.post(reverse("console:claim_next"))
    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("console:item", args=[crit.pk])
    crit.refresh_from_db()
    assert crit.state == ExceptionState.CLAIMED
    assert crit.assignee == coordinator


def test_claim_next_never_reaches_into_another_organization(client, org, other_org, coordinator):
    # given
    raise_item(other_org, "theirs", severity="critical")
    login(client, coordinator)
    # when
    response = client.post(reverse("console:claim_next"), follow=True)
    # then
    assert b"Nothing to claim" in response.content
    assert OpsException.objects.get().state == ExceptionState.OPEN


def test_resolve_with_note_closes_the_item_and_audits_it(client, org, coordinator):
    # given
    item = raise_item(org, "a")
    exception_claim(exception_id=item.pk, actor=coordinator)
    login(client, coordinator)
    # when
    response = client.post(
        reverse("console:item_action", args=[item.pk, "resolve"]), {"note": "called the lab"}
    )
    # then
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.state == ExceptionState.RESOLVED
    assert item.resolution_note == "called the lab"
    event = AuditEvent.objects.filter(action="exception.resolved", object_id=str(item.pk)).get()
    assert event.actor_label == coordinator.username
    mine = client.get(reverse("console:queue", args=["mine"]))
    assert list(mine.context["items"]) == []


def test_resolve_without_a_note_is_refused_with_a_message(client, org, coordinator):
    # given
    item = raise_item(org, "a")
    login(client, coordinator)
    # when
    response = client.post(
        reverse("console:item_action", args=[item.pk, "resolve"]), {"note": "  "}, follow=True
    )
    # then
    assert response.status_code == 200
    assert b"Not resolved" in response.content
    item.refresh_from_db()
    assert item.state == ExceptionState.OPEN


def test_snooze_dismiss_and_invalid_transition(client, org, coordinator):
    # given
    a = raise_item(org, "a")
    b = raise_item(org, "b")
    login(client, coordinator)
    # when
    client.post(reverse("console:item_action", args=[a.pk, "snooze"]), {"duration": "4h"})
    client.post(reverse("console:item_action", args=[b.pk, "dismiss"]), {"reason": "duplicate"})
    again = client.post(
        reverse("console:item_action", args=[b.pk, "snooze"]), {"duration": "4h"}, follow=True
    )
    past = client.post(
        reverse("console:item_action", args=[a.pk, "snooze"]),
        {"duration": "custom", "until": "2001-01-01T10:00"},
        follow=True,
    )
    # then
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.state == ExceptionState.SNOOZED
    assert a.snoozed_until > timezone.now() + timedelta(hours=3)
    assert b.state == ExceptionState.DISMISSED
    assert b"cannot snooze" in again.content
    assert b"must be in the future" in past.content


def test_retry_runs_the_registered_action(client, org, coordinator):
    # given
    calls = []
    registry.exception_kinds.setdefault(
        "console_test", registry.exception_kinds["manual"].__class__("console_test", "Test")
    )
    register_retry_action(
        "console_test",
        "Send again",
        lambda e, actor: calls.append(e.pk) or "sent",
        description="Sends the test thing again.",
    )
    register_retry_action("console_test", "Undescribed", lambda e, actor: "ok")
    item = raise_item(org, "a", kind="console_test")
    login(client, coordinator)
    try:
        # when
        page = client.get(reverse("console:item", args=[item.pk]))
        response = client.post(
            reverse("console:item_action", args=[item.pk, "retry"]),
            {"label": "Send again"},
            follow=True,
        )
    finally:
        registry.retry_actions.pop("console_test", None)
        registry.exception_kinds.pop("console_test", None)
    # then: each button says what it does (a generic line when its app said nothing)
    assert b"Sends the test thing again." in page.content
    assert b"Re-runs the failed operation" in page.content
    assert calls == [item.pk]
    assert b"sent" in response.content
    assert AuditEvent.objects.filter(action="exception.retried", object_id=str(item.pk)).exists()


def test_coordinator_of_org_a_gets_404_on_org_b_items_by_url(client, org, other_org, coordinator):
    # given
    theirs = raise_item(other_org, "x")
    login(client, coordinator)
    # when
    page = client.get(reverse("console:item", args=[theirs.pk]))
    act = client.post(
        reverse("console:item_action", args=[theirs.pk, "resolve"]), {"note": "mine now"}
    )
    # then
    assert page.status_code == 404
    assert act.status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == ExceptionState.OPEN


def test_queues_only_list_own_organization(client, org, other_org, coordinator):
    # given
    raise_item(other_org, "x")
    mine = raise_item(org, "y")
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["open"]))
    # then
    assert [i.pk for i in response.context["items"]] == [mine.pk]


def test_auditor_sees_no_action_buttons_and_cannot_act(client, org, auditor):
    # given
    item = raise_item(org, "a")
    login(client, auditor)
    # when
    page = client.get(reverse("console:item", args=[item.pk]))
    queue = client.get(reverse("console:queue", args=["open"]))
    act = client.post(reverse("console:item_action", args=[item.pk, "resolve"]), {"note": "x"})
    claim = client.post(reverse("console:claim_next"))
    # then
    assert page.status_code == 200
    assert b"read-only access" in page.content
    assert b'action="/console/items/' not in page.content
    assert b"claim-next-form" not in queue.content
    assert b"bulk-form" in queue.content and b"Bulk action" not in queue.content
    assert act.status_code == 403
    assert claim.status_code == 403
    item.refresh_from_db()
    assert item.state == ExceptionState.OPEN


def test_coordinator_cannot_reassign_or_bulk_act(client, org, coordinator, lead):
    # given
    item = raise_item(org, "a")
    login(client, coordinator)
    # when
    reassign = client.post(
        reverse("console:item_action", args=[item.pk, "reassign"]), {"assignee": lead.pk}
    )
    bulk = client.post(
        reverse("console:bulk"), {"action": "snooze", "duration": "1d", "ids": [item.pk]}
    )
    # then
    assert reassign.status_code == 403
    assert bulk.status_code == 403


def test_lead_reassigns_an_item(client, org, lead, coordinator):
    # given
    item = raise_item(org, "a")
    login(client, lead)
    # when
    client.post(
        reverse("console:item_action", args=[item.pk, "reassign"]), {"assignee": coordinator.pk}
    )
    # then
    item.refresh_from_db()
    assert item.assignee == coordinator
    assert item.state == ExceptionState.CLAIMED
    assert AuditEvent.objects.filter(action="exception.reassign", object_id=str(item.pk)).exists()


def test_lead_cannot_reassign_to_someone_outside_the_organization(
    client, org, lead, other_coordinator
):
    # given
    item = raise_item(org, "a")
    login(client, lead)
    # when
    response = client.post(
        reverse("console:item_action", args=[item.pk, "reassign"]),
        {"assignee": other_coordinator.pk},
        follow=True,
    )
    # then
    assert b"Not reassigned" in response.content
    item.refresh_from_db()
    assert item.assignee is None


def test_bulk_snooze_of_a_filtered_selection_confirms_the_count_first(client, org, lead):
    # given
    highs = [raise_item(org, f"h{i}", severity="high") for i in range(3)]
    low = raise_item(org, "low", severity="low")
    login(client, lead)
    form = {
        "action": "snooze",
        "duration": "1d",
        "scope": "matching",
        "tab": "open",
        "severity": "high",
    }
    # when
    confirm = client.post(reverse("console:bulk"), form)
    # then nothing has changed yet and the count is shown
    assert confirm.status_code == 200
    assert confirm.context["count"] == 3
    assert OpsException.objects.filter(state=ExceptionState.SNOOZED).count() == 0
    # when confirmed
    done = client.post(
        reverse("console:bulk"),
        {
            "action": "snooze",
            "duration": "1d",
            "scope": "selected",
            "confirm": "yes",
            "ids": confirm.context["ids"],
        },
    )
    # then
    assert done.context["done"] == 3
    assert set(
        OpsException.objects.filter(state=ExceptionState.SNOOZED).values_list("pk", flat=True)
    ) == {h.pk for h in highs}
    low.refresh_from_db()
    assert low.state == ExceptionState.OPEN
    assert AuditEvent.objects.filter(action="exception.snooze").count() == 3


def test_bulk_failure_on_one_item_is_reported_and_others_still_done(client, org, lead):
    # given
    a = raise_item(org, "a")
    b = raise_item(org, "b")
    c = raise_item(org, "c")
    from programs.services import exception_snooze

    exception_snooze(exception_id=b.pk, actor=SYSTEM, until=timezone.now() + timedelta(hours=1))
    login(client, lead)
    # when: reassign cannot apply to the snoozed one
    done = client.post(
        reverse("console:bulk"),
        {
            "action": "assign",
            "assignee": lead.pk,
            "scope": "selected",
            "confirm": "yes",
            "ids": [a.pk, b.pk, c.pk],
        },
    )
    # then
    assert done.context["done"] == 2
    assert [pk for pk, _why in done.context["failures"]] == [b.pk]
    assert b"cannot reassign" in done.content
    a.refresh_from_db()
    c.refresh_from_db()
    assert a.assignee == lead and c.assignee == lead


def test_bulk_never_touches_another_organization(client, org, other_org, lead):
    # given
    theirs = raise_item(other_org, "x")
    mine = raise_item(org, "y")
    login(client, lead)
    # when
    done = client.post(
        reverse("console:bulk"),
        {
            "action": "resolve",
            "note": "bulk",
            "scope": "selected",
            "confirm": "yes",
            "ids": [theirs.pk, mine.pk, "junk"],
        },
    )
    # then
    assert done.context["done"] == 1
    theirs.refresh_from_db()
    assert theirs.state == ExceptionState.OPEN


def test_bulk_resolve_without_note_is_refused(client, org, lead):
    # given
    item = raise_item(org, "a")
    login(client, lead)
    # when
    response = client.post(
        reverse("console:bulk"),
        {"action": "resolve", "scope": "selected", "ids": [item.pk]},
        follow=True,
    )
    # then
    assert b"a resolution note is required" in response.content
    item.refresh_from_db()
    assert item.state == ExceptionState.OPEN


def test_anonymous_users_are_sent_to_login(client, org):
    # when
    response = client.get(reverse("console:queue", args=["mine"]))
    # then
    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.parametrize("tab", ["mine", "unassigned", "open"])
def test_queue_query_count_is_constant_in_page_size(
    client, org, coordinator, program, tab, django_assert_max_num_queries
):
    # given
    for i in range(60):
        item = raise_item(org, f"q{i}", program=program, severity="high" if i % 2 else "low")
        if tab == "mine" and i % 3 == 0:
            exception_claim(exception_id=item.pk, actor=coordinator)
    login(client, coordinator)
    client.get(reverse("console:queue", args=[tab]))  # warm session and caches
    # when / then
    with django_assert_max_num_queries(14):
        response = client.get(reverse("console:queue", args=[tab]))
    assert response.status_code == 200
    assert len(response.context["items"]) in (20, 50)


def test_item_detail_query_count_is_bounded(
    client, org, coordinator, django_assert_max_num_queries
):
    # given
    item = raise_item(org, "a")
    for _ in range(30):
        raise_item(org, "a")  # occurrences
    exception_claim(exception_id=item.pk, actor=coordinator)
    login(client, coordinator)
    client.get(reverse("console:item", args=[item.pk]))
    # when / then
    with django_assert_max_num_queries(10):
        response = client.get(reverse("console:item", args=[item.pk]))
    assert response.context["item"].occurrences == 31
    assert b"Resolve" in response.content


def test_facet_counts_cover_every_filter_exactly_below_the_cap(client, org, coordinator):
    # given items of two severities, ages and SLA states
    now = timezone.now()
    fresh = raise_item(org, "a", severity="high")
    old = raise_item(org, "b", severity="low")
    older = raise_item(org, "c", severity="low")
    OpsException.objects.filter(pk=old.pk).update(
        first_seen_at=now - timedelta(days=3), due_by=now - timedelta(days=1)
    )
    OpsException.objects.filter(pk=older.pk).update(
        first_seen_at=now - timedelta(days=30), due_by=now - timedelta(days=20)
    )
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["open"]))
    # then
    facets = response.context["facets"]
    assert not facets["capped"]
    assert str(facets["total"]) == "3"
    assert facets["severity"] == {"low": 2, "medium": 0, "high": 1, "critical": 0}
    assert facets["age"] == {"lt1h": 1, "1h-1d": 0, "1d-7d": 1, "gt7d": 1}
    assert facets["due"] == {"overdue": 2, "ontime": 1}
    assert facets["kind"]["manual"] == 3
    assert fresh.pk in [i.pk for i in response.context["items"]]


def test_each_menu_counts_within_the_other_filters_not_its_own(client, org, coordinator):
    # given: two high and one low item, one of the high ones overdue
    now = timezone.now()
    raise_item(org, "a", severity="high")
    late = raise_item(org, "b", severity="high")
    raise_item(org, "c", severity="low")
    OpsException.objects.filter(pk=late.pk).update(due_by=now - timedelta(hours=1))
    login(client, coordinator)
    # when: filtered to high severity and overdue
    response = client.get(
        reverse("console:queue", args=["open"]), {"severity": "high", "due": "overdue"}
    )
    # then: the list and total follow every filter; each menu's counts say
    # what picking another value would list (they counted only the picked
    # value: "Low (0)", "Within SLA (0)")
    facets = response.context["facets"]
    assert [i.pk for i in response.context["items"]] == [late.pk]
    assert str(facets["total"]) == "1"
    assert facets["severity"] == {"low": 0, "medium": 0, "high": 1, "critical": 0}
    assert facets["due"] == {"overdue": 1, "ontime": 1}  # the high ones
    unfiltered_due = client.get(reverse("console:queue", args=["open"]), {"due": "overdue"})
    assert unfiltered_due.context["facets"]["severity"] == {
        "low": 0,
        "medium": 0,
        "high": 1,
        "critical": 0,
    }
    by_severity = client.get(reverse("console:queue", args=["open"]), {"severity": "high"})
    assert by_severity.context["facets"]["severity"] == {
        "low": 1,
        "medium": 0,
        "high": 2,
        "critical": 0,
    }


def test_facet_counts_above_the_cap_describe_the_most_urgent_items(
    client, org, coordinator, monkeypatch
):
    # given more items than the facet sample
    from programs.console import selectors

    monkeypatch.setattr(selectors, "FACET_CAP", 3)
    raise_item(org, "crit", severity="critical")
    for i in range(4):
        raise_item(org, f"low{i}", severity="low")
    login(client, coordinator)
    # when
    response = client.get(reverse("console:queue", args=["unassigned"]))
    # then: the three most urgent (the critical one first), and the page says so
    facets = response.context["facets"]
    assert facets["capped"]
    assert str(facets["total"]) == "3+"
    assert facets["severity"]["critical"] == 1
    assert facets["severity"]["low"] == 2
    assert b"Counts cover the 3 most urgent items" in response.content


def test_filtered_list_query_count_is_constant(
    client, org, lead, program, django_assert_max_num_queries
):
    # given
    for i in range(70):
        item = raise_item(org, f"f{i}", program=program, severity="high" if i % 2 else "low")
        OpsException.objects.filter(pk=item.pk).update(
            first_seen_at=timezone.now() - timedelta(days=10),
            due_by=timezone.now() - timedelta(days=9),
        )
    login(client, lead)
    query = {"severity": "high", "program": program.pk, "age": "gt7d", "due": "overdue"}
    client.get(reverse("console:queue", args=["open"]), query)
    # when / then
    with django_assert_max_num_queries(15):
        response = client.get(reverse("console:queue", args=["open"]), query)
    assert len(response.context["items"]) == 35
    assert response.context["facets"]["severity"]["high"] == 35


def test_claim_release_and_claim_next_keep_the_queue_the_user_came_from(client, org, coordinator):
    # given: an item opened from a filtered queue
    item = raise_item(org, "q1", severity="high")
    raise_item(org, "q2", severity="high")
    queue = reverse("console:queue", args=["unassigned"]) + "?severity=high"
    login(client, coordinator)
    page = client.get(reverse("console:item", args=[item.pk]), {"next": queue})
    assert f'name="next" value="{queue}"'.replace("&", "&amp;") in page.content.decode()
    # when: claimed, released, and the next one claimed from there
    claim = client.post(reverse("console:item_action", args=[item.pk, "claim"]), {"next": queue})
    release = client.post(
        reverse("console:item_action", args=[item.pk, "release"]), {"next": queue}
    )
    claim_next = client.post(reverse("console:claim_next"), {"next": queue})
    # then: each lands on an item page that still leads back to that queue
    # (they dropped ?next=, and the back link and Dismiss led to My queue)
    expected = f"{reverse('console:item', args=[item.pk])}?{urlencode({'next': queue})}"
    assert claim["Location"] == expected
    assert release["Location"] == expected
    assert claim_next["Location"].endswith("?" + urlencode({"next": queue}))
    refused = client.post(
        reverse("console:item_action", args=[item.pk, "resolve"]), {"note": "", "next": queue}
    )
    assert refused["Location"].endswith("?" + urlencode({"next": queue}))


def test_a_page_past_the_end_leads_to_the_last_page_with_items(client, org, coordinator):
    # given 3 items: one page; "page 2" said "3 items" above "No items match"
    for i in range(3):
        raise_item(org, f"p{i}")
    login(client, coordinator)
    # when
    response = client.get(
        reverse("console:queue", args=["open"]), {"page": "2", "severity": "medium"}
    )
    # then
    assert response.status_code == 302
    assert response["Location"] == "/console/queue/open/?page=1&severity=medium"
    assert len(client.get(response["Location"]).context["items"]) == 3


def test_item_page_states_limits_and_the_timezone_of_its_times(client, org, coordinator):
    # the server refused 2,001 characters and the typed note was gone; the
    # snooze date had only an aria-label saying UTC
    item = raise_item(org, "lim")
    exception_claim(exception_id=item.pk, actor=coordinator)
    login(client, coordinator)
    page = client.get(reverse("console:item", args=[item.pk])).content.decode()
    assert 'id="resolve-note" rows="2" required maxlength="2000"' in page
    assert 'id="dismiss-reason" required maxlength="2000"' in page
    assert '<span class="subtle small" data-for-duration="custom">UTC</span>' in page
    assert " UTC</time>" in page  # the history's times


def test_bulk_with_nothing_ticked_says_to_tick_something(client, org, lead):
    raise_item(org, "a")
    login(client, lead)

    response = client.post(
        reverse("console:bulk"),
        {"action": "snooze", "duration": "1d", "scope": "selected"},
        follow=True,
    )

    assert "tick at least one item" in response.content.decode()


def test_retry_of_a_kind_without_a_retry_action_says_so(client, org, coordinator):
    # it said "cannot retry exception #N: it is open; allowed: claim, ..."
    item = raise_item(org, "nr")
    login(client, coordinator)

    response = client.post(reverse("console:item_action", args=[item.pk, "retry"]), follow=True)

    text = response.content.decode()
    assert "items have no retry action" in text and "resolve or dismiss it instead" in text
    assert "allowed:" not in text


def test_program_zero_is_a_program_no_item_has(client, org, coordinator):
    # it was read as "no program filter" and listed everything
    raise_item(org, "z")
    login(client, coordinator)

    response = client.get(reverse("console:queue", args=["open"]), {"program": "0"})

    assert response.context["items"] == []
    assert str(response.context["facets"]["total"]) == "0"
