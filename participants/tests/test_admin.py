"""Admin: scoped lists, filters, transition buttons by role, step completion."""

import pytest
from django.urls import reverse

from participants.models import StepState
from participants.tests.conftest import drive
from programs.models import AuditEvent


def test_enrollment_list_filters_and_search(client, coordinator, mini_enrollment):
    client.force_login(coordinator)
    url = reverse("admin:participants_enrollment_changelist")
    assert mini_enrollment.participant.external_ref in client.get(url).text
    for query in (
        "?state=referred",
        "?age=lt1d",
        f"?program__id__exact={mini_enrollment.program_id}",
        "?q=ref-001",
    ):
        response = client.get(url + query)
        assert response.status_code == 200
        assert f"/{mini_enrollment.pk}/change/" in response.text, query
    assert f"/{mini_enrollment.pk}/change/" not in client.get(url + "?state=active").text
    assert f"/{mini_enrollment.pk}/change/" not in client.get(url + "?age=gt30d").text


def test_other_organization_sees_nothing(client, other_coordinator, mini_enrollment):
    client.force_login(other_coordinator)
    url = reverse("admin:participants_enrollment_change", args=[mini_enrollment.pk])
    assert client.get(url).status_code in (302, 404)


def test_change_page_shows_allowed_buttons_steps_and_audit(client, coordinator, mini_enrollment):
    client.force_login(coordinator)
    page = client.get(reverse("admin:participants_enrollment_change", args=[mini_enrollment.pk]))
    assert page.status_code == 200
    assert 'value="Screened eligible"' in page.text
    assert 'value="Withdraw"' in page.text
    assert 'value="Invite"' not in page.text  # not allowed from referred
    assert "Screen" in page.text and ">Complete</button>" in page.text
    assert "enrollment.opened" in page.text


def test_transition_button_runs_the_service(client, coordinator, mini_enrollment):
    client.force_login(coordinator)
    url = reverse("admin:participants_enrollment_transition", args=[mini_enrollment.pk, "withdraw"])
    client.post(url, {"reason": "moved away"})
    mini_enrollment.refresh_from_db()
    assert mini_enrollment.state == "withdrawn"
    audit = AuditEvent.objects.get(action="enrollment.withdraw")
    assert audit.actor_label == coordinator.get_username() and audit.reason == "moved away"


@pytest.mark.parametrize("object_id", ["abc", "²", "99999999999999999999"])
def test_a_transition_or_step_button_posted_for_no_such_id_is_404(
    client, coordinator, mini_enrollment, object_id
):
    client.force_login(coordinator)
    step = mini_enrollment.steps.get()
    transition = reverse("admin:participants_enrollment_transition", args=[object_id, "withdraw"])
    complete = reverse("admin:participants_enrollment_complete_step", args=[object_id, step.pk])
    assert client.post(transition, {"reason": "x"}).status_code == 404
    assert client.post(complete).status_code == 404
    mini_enrollment.refresh_from_db()
    assert mini_enrollment.state != "withdrawn"


def test_coordinator_gets_no_complete_button(client, coordinator, mini_enrollment):
    from participants.tests.conftest import finish_stage

    enrollment = drive(mini_enrollment, "active")
    finish_stage(enrollment)
    client.force_login(coordinator)
    page = client.get(reverse("admin:participants_enrollment_change", args=[enrollment.pk]))
    assert 'value="Pause"' in page.text and 'value="Complete"' not in page.text
    # and posting it anyway is refused
    client.post(
        reverse("admin:participants_enrollment_transition", args=[enrollment.pk, "complete"])
    )
    enrollment.refresh_from_db()
    assert enrollment.state == "active"


def test_step_complete_button(client, coordinator, mini_enrollment):
    client.force_login(coordinator)
    step = mini_enrollment.steps.get()
    url = reverse("admin:participants_enrollment_complete_step", args=[mini_enrollment.pk, step.pk])
    response = client.post(url)
    assert response.status_code == 302
    step.refresh_from_db()
    assert step.state == StepState.COMPLETED and step.completed_by == coordinator.get_username()


def test_auditor_can_view_but_not_act(client, auditor, mini_enrollment):
    client.force_login(auditor)
    page = client.get(reverse("admin:participants_enrollment_change", args=[mini_enrollment.pk]))
    assert page.status_code == 200
    assert 'value="Withdraw"' not in page.text
    assert ">Complete</button>" not in page.text  # offered, then refused with 403
    step = mini_enrollment.steps.get()
    client.post(
        reverse("admin:participants_enrollment_complete_step", args=[mini_enrollment.pk, step.pk])
    )
    step.refresh_from_db()
    assert step.state == StepState.PENDING


def test_a_refused_step_formset_with_extra_rows_renders(client, coordinator, mini_enrollment):
    # a Complete button for a row that is no step had no id to link to: a 500
    client.force_login(coordinator)
    url = reverse("admin:participants_enrollment_change", args=[mini_enrollment.pk])
    response = client.post(url, {"steps-TOTAL_FORMS": "1001", "steps-INITIAL_FORMS": "0"})
    assert response.status_code in (200, 302)
