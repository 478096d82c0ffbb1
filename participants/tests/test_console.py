"""Console pages of participants: the timeline and the program health dashboard."""

from datetime import timedelta

import pytest
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
