"""The console in a real browser: the coordinator's day, concurrent claims,
a lead's bulk snooze and an auditor's read-only view.

Run: .venv/bin/python -m pytest tests/browser -q -p no:randomly
Screenshots land in artifacts/browser/ (git-ignored).
"""

from urllib.parse import urlsplit

import pytest
from django.conf import settings

from participants.services import enrollment_open, participant_upsert
from programs.actors import Actor
from programs.models import ExceptionState, OpsException
from programs.services import exception_raise
from programs.tests.factories import TEST_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SYSTEM = Actor.system("browser-test")


def log_in(page, live_server, user):
    page.goto(f"{live_server.url}{settings.LOGIN_URL}?next=/console/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/console/**")


def raise_item(org, key, severity="medium", **kwargs):
    item, _ = exception_raise(
        organization=org,
        kind="manual",
        title=f"Check {key}",
        dedup_key=key,
        severity=severity,
        actor=SYSTEM,
        **kwargs,
    )
    return item


def test_coordinator_claims_next_opens_timeline_resolves_and_item_leaves_queue(
    live_server, new_page, shot, org, program, coordinator
):
    # given an unassigned critical item about a participant's step
    participant, _ = participant_upsert(organization=org, external_ref="P-1001", actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    step = enrollment.steps.first()
    item = raise_item(org, "lab", severity="critical", program=program, subject=step)
    raise_item(org, "other", severity="low", program=program)
    page = new_page()
    log_in(page, live_server, coordinator)
    page.goto(f"{live_server.url}/console/queue/unassigned/")
    shot(page, "queue_unassigned")
    # when: claim next
    page.click("#claim-next-form button")
    # (the item page keeps the queue it came from, for its back link)
    page.wait_for_url(f"**/console/items/{item.pk}/?next=**")
    assert "is now yours" in page.content() or "Claimed" in page.content()
    shot(page, "item_detail")
    # and open the timeline from the participant context
    page.click("text=Open the full timeline")
    page.wait_for_url(f"**/console/enrollments/{enrollment.pk}/")
    assert "P-1001" in page.content()
    shot(page, "timeline")
    page.go_back()
    # and resolve with a note (keyboard: r focuses the note)
    page.keyboard.press("r")
    page.keyboard.type("Lab confirmed the result was filed")
    page.click("#resolve-form button[type=submit]")
    page.wait_for_url("**/console/queue/unassigned/")  # back where Claim next was pressed
    # then
    page.goto(f"{live_server.url}/console/queue/mine/")
    assert f"#{item.pk} " not in page.inner_text("main")
    item.refresh_from_db()
    assert item.state == ExceptionState.RESOLVED
    assert item.resolution_note == "Lab confirmed the result was filed"
    assert not [e for e in page.csp_errors if "Content Security Policy" in e]


# Two claims at the same moment are kept apart by row locks (skip_locked);
# SQLite's in-memory test database, shared by the live server's threads,
# has none, and its table locks let both read the same item now and then.
@pytest.mark.postgres
def test_two_browsers_claim_next_at_once_and_get_different_items(
    live_server, new_page, org, coordinator, lead
):
    # given
    for i in range(3):
        raise_item(org, f"item{i}", severity="high")
    first, second = new_page(), new_page()
    log_in(first, live_server, coordinator)
    log_in(second, live_server, lead)
    for page in (first, second):
        page.goto(f"{live_server.url}/console/queue/unassigned/")
    # when both submit "Claim next" without waiting for each other
    for page in (first, second):
        page.evaluate("document.getElementById('claim-next-form').requestSubmit()")
    first.wait_for_url("**/console/items/*/?next=**")
    second.wait_for_url("**/console/items/*/?next=**")
    # then
    first_id, second_id = (
        urlsplit(page.url).path.rstrip("/").rsplit("/", 1)[-1] for page in (first, second)
    )
    assert first_id != second_id
    claimed = OpsException.objects.filter(state=ExceptionState.CLAIMED)
    assert {str(i.pk) for i in claimed} == {first_id, second_id}
    assert {i.assignee_id for i in claimed} == {coordinator.pk, lead.pk}


def test_lead_bulk_snoozes_a_filtered_selection(live_server, new_page, shot, org, lead):
    # given
    highs = [raise_item(org, f"h{i}", severity="high") for i in range(4)]
    low = raise_item(org, "low", severity="low")
    page = new_page()
    log_in(page, live_server, lead)
    # when: filter to high severity, choose snooze for all matching, review, confirm
    page.goto(f"{live_server.url}/console/queue/open/")
    page.select_option("select[name=severity]", "high")
    page.wait_for_url("**severity=high**")
    page.select_option("#bulk-action", "snooze")
    page.check("#scope-matching")
    shot(page, "queue_bulk")
    page.click("#bulk-form button[type=submit]")
    page.wait_for_selector("#bulk-count")
    assert page.inner_text("#bulk-count") == "4"
    shot(page, "bulk_confirm")
    page.click("#bulk-confirm")
    page.wait_for_selector("#bulk-done")
    # then
    assert page.inner_text("#bulk-done") == "4"
    states = dict(OpsException.objects.values_list("pk", "state"))
    assert all(states[h.pk] == ExceptionState.SNOOZED for h in highs)
    assert states[low.pk] == ExceptionState.OPEN


def test_auditor_sees_no_action_buttons(live_server, new_page, shot, org, program, auditor):
    # given
    item = raise_item(org, "audit-me", severity="high", program=program)
    page = new_page()
    log_in(page, live_server, auditor)
    # when
    page.goto(f"{live_server.url}/console/queue/open/")
    queue_buttons = page.locator("main form[method=post] button").count()
    page.goto(f"{live_server.url}/console/items/{item.pk}/")
    shot(page, "item_auditor")
    # then
    assert queue_buttons == 0
    assert page.locator("main form[method=post]").count() == 0
    assert "read-only access" in page.inner_text("main")
    page.goto(f"{live_server.url}/console/programs/{program.pk}/health/")
    shot(page, "dashboard")
    assert page.locator("svg.chart").count() == 3
