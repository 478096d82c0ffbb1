"""Console pages of participants: the timeline and the program health dashboard."""

from datetime import timedelta

import pytest
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from participants.models import Enrollment
from participants.services import enrollment_open, participant_upsert, step_complete
from programs.actors import Actor
from programs.registries import register_timeline_contributor, registry
from programs.services import exception_claim, exception_raise, exception_resolve
from programs.timeline import TimelineRow

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")


def enroll(org, program, ref="P-001"):
    participant, _ = participant_upsert(organization=org, external_ref=ref, actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    return enrollment


def test_timeline_merges_transitions_steps_exceptions_and_contributed_rows(
    client, org, program, coordinator
):
    # given an enrollment with a step, an exception about that step and a
    # row contributed by another app through the registry
    enrollment = enroll(org, program)
    step = enrollment.steps.first()
    item, _ = exception_raise(
        organization=org,
        program=program,
        kind="manual",
        title="Lab result missing",
        dedup_key="lab",
        subject=step,
        actor=SYSTEM,
    )
    exception_claim(exception_id=item.pk, actor=coordinator)
    exception_resolve(exception_id=item.pk, actor=coordinator, note="lab called back")

    def messages_contributor(e):
        yield TimelineRow(
            at=timezone.now() + timedelta(seconds=5),
            kind="message",
            title="SMS reminder delivered",
            actor="system",
        )

    register_timeline_contributor(messages_contributor)
    client.force_login(coordinator)
    try:
        # when
        response = client.get(reverse("participants_console:timeline", args=[enrollment.pk]))
    finally:
        registry.timeline_contributors.remove(messages_contributor)
    # then
    assert response.status_code == 200
    rows = response.context["rows"]
    kinds = [r.kind for r in rows]
    assert {"transition", "step", "exception", "message"} <= set(kinds)
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    body = response.content.decode()
    assert "Lab result missing" in body
    assert "lab called back" in body
    assert "SMS reminder delivered" in body
    assert "P-001" in body


def test_timeline_filters_by_kind(client, org, program, coordinator):
    # given
    enrollment = enroll(org, program)
    exception_raise(
        organization=org, kind="manual", title="x", dedup_key="x", subject=enrollment, actor=SYSTEM
    )
    client.force_login(coordinator)
    # when
    response = client.get(
        reverse("participants_console:timeline", args=[enrollment.pk]), {"kind": "exception"}
    )
    # then
    assert {r.kind for r in response.context["rows"]} == {"exception"}


def test_a_failing_contributor_is_reported_not_a_500(client, org, program, coordinator):
    # given
    enrollment = enroll(org, program)

    def broken(e):
        raise RuntimeError("boom")

    register_timeline_contributor(broken)
    client.force_login(coordinator)
    try:
        # when
        response = client.get(reverse("participants_console:timeline", args=[enrollment.pk]))
    finally:
        registry.timeline_contributors.remove(broken)
    # then
    assert response.status_code == 200
    assert b"are missing" in response.content
    assert any(r.kind == "transition" for r in response.context["rows"])


def test_other_organization_enrollment_and_program_are_404(client, org, program, other_coordinator):
    # given
    enrollment = enroll(org, program)
    client.force_login(other_coordinator)
    # when / then
    assert (
        client.get(reverse("participants_console:timeline", args=[enrollment.pk])).status_code
        == 404
    )
    assert (
        client.get(reverse("participants_console:dashboard", args=[program.pk])).status_code == 404
    )


def test_item_page_shows_the_participant_context_of_a_step_item(client, org, program, coordinator):
    # given
    enrollment = enroll(org, program, ref="P-777")
    step = enrollment.steps.first()
    item, _ = exception_raise(
        organization=org,
        kind="manual",
        title="Overdue step",
        dedup_key="s",
        subject=step,
        actor=SYSTEM,
    )
    client.force_login(coordinator)
    # when
    response = client.get(reverse("console:item", args=[item.pk]))
    # then
    body = response.content.decode()
    assert "Participant context" in body
    assert "P-777" in body
    assert reverse("participants_console:timeline", args=[enrollment.pk]) in body


def test_dashboard_shows_funnel_exceptions_automation_and_strain(
    client, org, program, coordinator, auditor
):
    # given
    enrollments = [enroll(org, program, ref=f"P-{i}") for i in range(3)]
    step = enrollments[0].steps.first()
    step_complete(step_id=step.pk, actor=coordinator, via="coordinator")
    step2 = enrollments[1].steps.first()
    step_complete(step_id=step2.pk, actor=SYSTEM, via="event")
    item, _ = exception_raise(
        organization=org, program=program, kind="manual", title="t", dedup_key="t", actor=SYSTEM
    )
    exception_claim(exception_id=item.pk, actor=coordinator)
    exception_resolve(exception_id=item.pk, actor=coordinator, note="done")
    exception_raise(
        organization=org, program=program, kind="manual", title="u", dedup_key="u", actor=SYSTEM
    )
    client.force_login(auditor)
    # when
    response = client.get(reverse("participants_console:dashboard", args=[program.pk]))
    # then
    assert response.status_code == 200
    ctx = response.context
    funnel = {f["state"]: f["n"] for f in ctx["funnel"]}
    assert sum(funnel.values()) == 3
    assert ctx["opened_total"] == 2
    assert ctx["resolved_total"] == 1
    assert ctx["median"] is not None
    assert sum(b["n"] for b in ctx["aging"]) == 1
    assert ctx["completions"] >= 2 and ctx["automated"] >= 1
    assert ctx["automation_rate"] < 100
    assert ctx["weeks"][-1]["interventions"] >= 3  # claim, resolve, step completion
    assert b"<svg" in response.content
    assert b"style=" not in response.content


def test_dashboard_and_timeline_query_counts_are_bounded(
    client, org, program, coordinator, django_assert_max_num_queries
):
    # given
    enrollments = [enroll(org, program, ref=f"P-{i}") for i in range(10)]
    for i, e in enumerate(enrollments):
        exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title=f"t{i}",
            dedup_key=f"t{i}",
            subject=e,
            actor=SYSTEM,
        )
    client.force_login(coordinator)
    client.get(reverse("participants_console:dashboard", args=[program.pk]))
    # when / then
    with django_assert_max_num_queries(17):
        client.get(reverse("participants_console:dashboard", args=[program.pk]))
    with django_assert_max_num_queries(17):
        response = client.get(reverse("participants_console:timeline", args=[enrollments[0].pk]))
    assert response.status_code == 200
    assert Enrollment.objects.count() == 10


def _history(enrollment, n, *, start=None, ties_every=4):
    """`n` transition rows for the enrollment, oldest first; every
    `ties_every`-th pair shares its timestamp (ties across a page edge)."""
    from programs.models import AuditEvent

    start = start or timezone.now() - timedelta(days=30)
    rows, at = [], start
    for i in range(n):
        if i % ties_every:
            at = at + timedelta(minutes=1)
        rows.append(
            AuditEvent(
                created_at=at,
                organization_id=enrollment.organization_id,
                actor_kind="system",
                actor_label="system:test",
                action=f"enrollment.bench_{i:04d}",
                object_type="participants.enrollment",
                object_id=str(enrollment.pk),
                to_state="active",
            )
        )
    AuditEvent.objects.bulk_create(rows)


def test_timeline_pages_backwards_from_the_newest_row_and_sees_each_row_once(
    client, org, program, coordinator, monkeypatch
):
    # given a history four pages long, with rows sharing timestamps
    from participants.console import timeline

    monkeypatch.setattr(timeline, "PAGE_ROWS", 7)
    enrollment = enroll(org, program)
    _history(enrollment, 25)
    client.force_login(coordinator)
    url = reverse("participants_console:timeline", args=[enrollment.pk])
    # when the coordinator follows "Earlier rows" until there are none
    seen, query, pages = [], {"order": "desc"}, 0
    while True:
        response = client.get(url, query)
        assert response.status_code == 200
        rows = response.context["rows"]
        assert len(rows) <= 7
        seen.extend(rows)
        pages += 1
        older = response.context["older_query"]
        if not older:
            break
        assert "Earlier rows" in response.content.decode()
        parsed = QueryDict(older)
        query = {key: parsed.getlist(key) for key in parsed}
        assert pages < 20
    # then every row appears exactly once, newest first
    titles = [r.title for r in seen if r.title.startswith("bench")]
    assert len(titles) == 25
    assert len(set(titles)) == 25
    assert [r.at for r in seen] == sorted((r.at for r in seen), reverse=True)
    assert pages >= 4


def test_timeline_page_without_order_shows_the_latest_rows_oldest_first(
    client, org, program, coordinator, monkeypatch
):
    # given
    from participants.console import timeline

    monkeypatch.setattr(timeline, "PAGE_ROWS", 10)
    enrollment = enroll(org, program)
    _history(enrollment, 30, start=timezone.now() + timedelta(hours=1))
    client.force_login(coordinator)
    # when
    response = client.get(reverse("participants_console:timeline", args=[enrollment.pk]))
    # then: the ten newest rows, in time order, and a link to earlier ones
    rows = response.context["rows"]
    assert len(rows) == 10
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    assert rows[-1].title == "bench 0029"
    assert response.context["older_query"]
    assert "up to 10 a page" in response.content.decode()


def test_timeline_query_count_does_not_grow_with_the_history(
    client, org, program, coordinator, django_assert_max_num_queries
):
    # given a participant with hundreds of rows and dozens of queue items
    enrollment = enroll(org, program)
    _history(enrollment, 400)
    for i in range(30):
        item, _ = exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title=f"item {i}",
            dedup_key=f"busy{i}",
            subject=enrollment,
            actor=SYSTEM,
        )
        exception_resolve(exception_id=item.pk, actor=SYSTEM, note="done")
    client.force_login(coordinator)
    url = reverse("participants_console:timeline", args=[enrollment.pk])
    client.get(url)
    # when / then
    with django_assert_max_num_queries(17):
        response = client.get(url, {"order": "desc"})
    from participants.console.timeline import PAGE_ROWS

    assert len(response.context["rows"]) == PAGE_ROWS
    assert response.context["older_query"]


def test_timeline_leaves_out_its_own_read_audit_rows(client, org, program, coordinator):
    # given a timeline that has been viewed (each view is audited)
    enrollment = enroll(org, program)
    client.force_login(coordinator)
    url = reverse("participants_console:timeline", args=[enrollment.pk])
    client.get(url)
    # when
    response = client.get(url)
    # then
    assert not [r for r in response.context["rows"] if "viewed" in r.title]


def test_item_page_participant_context_shows_only_the_latest_rows(
    client, org, program, coordinator
):
    # given an item about an enrollment with a long history
    from participants.console.subjects import RECENT_ROWS

    enrollment = enroll(org, program)
    _history(enrollment, 60, start=timezone.now() + timedelta(hours=1))
    item, _ = exception_raise(
        organization=org, kind="manual", title="x", dedup_key="x", subject=enrollment, actor=SYSTEM
    )
    client.force_login(coordinator)
    # when
    response = client.get(reverse("console:item", args=[item.pk]))
    # then
    rows = response.context["subject"].rows
    assert len(rows) == RECENT_ROWS
    assert rows[0].title == "bench 0059"
    assert [r.at for r in rows] == sorted((r.at for r in rows), reverse=True)


def test_dashboard_backlog_counts_are_capped_and_say_so(
    client, org, program, coordinator, monkeypatch
):
    # given more old active items than the cap
    from participants.console import health
    from programs.models import OpsException

    monkeypatch.setattr(health, "BACKLOG_CAP", 3)
    for i in range(5):
        exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title=f"old {i}",
            dedup_key=f"old{i}",
            actor=SYSTEM,
        )
    OpsException.objects.update(
        first_seen_at=timezone.now() - timedelta(days=10),
        due_by=timezone.now() - timedelta(days=9),
    )
    client.force_login(coordinator)
    # when
    response = client.get(reverse("participants_console:dashboard", args=[program.pk]))
    # then
    aging = response.context["aging"]
    assert [b["n"] for b in aging] == [0, 0, 0, 3]
    assert aging[-1]["text"] == "3+"
    assert response.context["overdue"]["text"] == "3+"
    assert "at least that many" in response.content.decode()


@pytest.mark.parametrize(
    "before", ["garbage", "2026-13-45T99:00:00+00:00~3", "2026-01-01T00:00:00~x"]
)
def test_a_malformed_timeline_cursor_shows_the_latest_page(
    client, org, program, coordinator, before
):
    # given
    enrollment = enroll(org, program)
    client.force_login(coordinator)
    # when
    response = client.get(
        reverse("participants_console:timeline", args=[enrollment.pk]), {"before": before}
    )
    # then
    assert response.status_code == 200
    assert not response.context["paged"]
    assert any(r.kind == "transition" for r in response.context["rows"])


def test_a_cursor_whose_skip_is_not_a_number_skips_nothing(client, org, program, coordinator):
    # given: '²' is a digit that int() refuses
    enrollment = enroll(org, program)
    url = reverse("participants_console:timeline", args=[enrollment.pk])
    client.force_login(coordinator)
    # when
    odd = client.get(url, {"before": "2099-01-01T00:00:00+00:00~²"})
    plain = client.get(url, {"before": "2099-01-01T00:00:00+00:00~0"})
    # then
    assert odd.status_code == 200
    assert [r.title for r in odd.context["rows"]] == [r.title for r in plain.context["rows"]]
    assert odd.context["rows"]


def test_timeline_pages_through_queue_item_rows_without_gaps(
    client, org, program, coordinator, monkeypatch
):
    # given 12 items about the enrollment, each with 3 audit rows (36 rows),
    # and pages of 5 rows
    from participants.console import timeline

    monkeypatch.setattr(timeline, "PAGE_ROWS", 5)
    enrollment = enroll(org, program)
    for i in range(12):
        item, _ = exception_raise(
            organization=org,
            program=program,
            kind="manual",
            title=f"item {i}",
            dedup_key=f"gap{i}",
            subject=enrollment,
            actor=SYSTEM,
        )
        exception_claim(exception_id=item.pk, actor=coordinator)
        exception_resolve(exception_id=item.pk, actor=coordinator, note="ok")
    client.force_login(coordinator)
    url = reverse("participants_console:timeline", args=[enrollment.pk])
    # when
    seen, query = [], {"kind": "exception", "order": "desc"}
    for _ in range(20):
        response = client.get(url, query)
        seen.extend(response.context["rows"])
        older = response.context["older_query"]
        if not older:
            break
        parsed = QueryDict(older)
        query = {key: parsed.getlist(key) for key in parsed}
    # then
    keys = [(r.at, r.title) for r in seen]
    assert len(keys) == 36
    assert len(set(keys)) == 36
    assert {r.kind for r in seen} == {"exception"}


def test_program_list_shows_enrollments_open_items_and_items_past_sla(
    client, org, program, coordinator, django_assert_max_num_queries
):
    # given: two enrollments (one withdrawn), two active items of which one
    # is past its SLA, and one resolved item
    from participants.services import enrollment_transition
    from programs.models import OpsException

    enroll(org, program, ref="P-1")
    gone = enroll(org, program, ref="P-2")
    enrollment_transition(
        enrollment_id=gone.pk, transition="withdraw", actor=coordinator, reason="moved away"
    )
    late, _ = exception_raise(
        organization=org, program=program, kind="manual", title="a", dedup_key="a", actor=SYSTEM
    )
    exception_raise(
        organization=org, program=program, kind="manual", title="b", dedup_key="b", actor=SYSTEM
    )
    done, _ = exception_raise(
        organization=org, program=program, kind="manual", title="c", dedup_key="c", actor=SYSTEM
    )
    exception_claim(exception_id=done.pk, actor=coordinator)
    exception_resolve(exception_id=done.pk, actor=coordinator, note="done")
    OpsException.objects.filter(pk=late.pk).update(due_by=timezone.now() - timedelta(hours=1))
    client.force_login(coordinator)
    # when
    with django_assert_max_num_queries(12):
        response = client.get(reverse("participants_console:programs"))
    # then
    ((shown, figures),) = response.context["rows"]
    assert shown == program
    assert figures == {"in_progress": "1", "open": "2", "past_sla": 1, "past_sla_text": "1"}
    body = response.content.decode()
    queue = reverse("console:queue", args=["open"])
    assert f"{queue}?program={program.pk}&amp;due=overdue" in body


def test_timeline_shows_the_queue_items_about_its_messages(client, org, program, coordinator):
    # given: an invitation message of the enrollment, failed into the queue
    # (items about messages were missing from the timeline)
    from messaging.management.commands.load_templates import load_templates
    from messaging.models import Message
    from participants.services import enrollment_transition

    load_templates(program=program, actor=SYSTEM)
    enrollment = enroll(org, program)
    for transition in ("screen_eligible", "invite"):
        enrollment_transition(enrollment_id=enrollment.pk, transition=transition, actor=SYSTEM)
    message = Message.objects.get(enrollment_id=enrollment.pk)
    exception_raise(
        organization=org,
        program=program,
        kind="manual",
        title="Message invitation undeliverable",
        dedup_key="msg",
        subject=message,
        actor=SYSTEM,
    )
    other = enroll(org, program, ref="P-002")
    client.force_login(coordinator)
    # when
    mine = client.get(
        reverse("participants_console:timeline", args=[enrollment.pk]), {"kind": "exception"}
    )
    theirs = client.get(reverse("participants_console:timeline", args=[other.pk]))
    # then
    assert "Message invitation undeliverable" in mine.content.decode()
    assert "Message invitation undeliverable" not in theirs.content.decode()


@pytest.mark.parametrize("before", ["0001-01-01T00:00:00+14:00~0", "9999-12-31T23:59:59-14:00~1"])
def test_a_timeline_cursor_outside_utc_dates_is_ignored(client, org, program, coordinator, before):
    # such a time has no UTC date (year 0 or 10000): OverflowError in the query, a 500
    enrollment = enroll(org, program)
    client.force_login(coordinator)
    response = client.get(
        reverse("participants_console:timeline", args=[enrollment.pk]), {"before": before}
    )
    assert response.status_code == 200
