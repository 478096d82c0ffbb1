"""Sensitive reads, the auditors' view of the trail and its audited CSV export."""

import csv
import io
import json

import pytest
from django.http import Http404, HttpResponse
from django.test import RequestFactory

from programs.models import AuditEvent
from programs.security.audit import audited_read
from programs.services import audit_record


@audited_read("participant.timeline_viewed", object_type="participants.enrollment")
def _timeline(request, pk):
    if pk == 404:
        raise Http404
    if pk == 403:
        return HttpResponse(status=403)
    return HttpResponse("timeline")


@pytest.mark.django_db
def test_a_sensitive_read_is_recorded_exactly_once_with_who_and_where(coordinator):
    # given
    request = RequestFactory().get(
        "/console/enrollments/7/", HTTP_USER_AGENT="UA/1", REMOTE_ADDR="192.0.2.4"
    )
    request.user = coordinator
    request.request_id = "req-read-0001"
    # when
    _timeline(request, pk=7)
    # then
    [row] = AuditEvent.objects.filter(action="participant.timeline_viewed")
    assert (row.actor_id, row.object_type, row.object_id) == (
        str(coordinator.pk),
        "participants.enrollment",
        "7",
    )
    assert (row.ip_address, row.user_agent, row.request_id) == (
        "192.0.2.4",
        "UA/1",
        "req-read-0001",
    )


@pytest.mark.django_db
def test_refused_reads_are_not_recorded_as_reads(coordinator):
    request = RequestFactory().get("/x/")
    request.user = coordinator
    assert _timeline(request, pk=403).status_code == 403
    with pytest.raises(Http404):
        _timeline(request, pk=404)
    assert not AuditEvent.objects.filter(action="participant.timeline_viewed").exists()


@pytest.fixture
def trail(org, other_org, coordinator, other_coordinator):
    audit_record(actor=coordinator, action="exception.claimed", organization=org, reason="ours")
    audit_record(
        actor=other_coordinator, action="exception.claimed", organization=other_org, reason="theirs"
    )
    audit_record(actor=coordinator, action="auth.login", reason='=HYPERLINK("x")')
    audit_record(actor=other_coordinator, action="auth.login")


@pytest.mark.django_db
def test_auditors_see_only_their_organizations_trail_and_members_sign_ins(
    client, auditor, coordinator, trail
):
    # given
    client.force_login(auditor)
    # when
    response = client.get("/security/audit/")
    # then
    assert response.status_code == 200
    text = response.content.decode()
    assert "ours" in text
    assert "theirs" not in text
    assert "coordinator-globex" not in text
    assert "coordinator-acme" in text


@pytest.mark.django_db
def test_audit_view_filters(client, auditor, trail):
    client.force_login(auditor)
    response = client.get("/security/audit/", {"action": "auth."})
    assert "exception.claimed" not in response.content.decode()
    assert "auth.login" in response.content.decode()
    bad = client.get("/security/audit/", {"date_from": "2026-02-02", "date_to": "2026-01-01"})
    assert b"end date is before" in bad.content


@pytest.mark.django_db
def test_a_filter_matching_nothing_says_so(client, auditor, trail):
    # the page showed only the form: an empty page of results is falsy
    client.force_login(auditor)
    response = client.get("/security/audit/", {"action": "nonexistent.action"})
    assert b"0 events." in response.content
    assert b"No events match these filters." in response.content


@pytest.mark.django_db
def test_coordinators_cannot_read_the_trail(client, coordinator):
    client.force_login(coordinator)
    # the console's navigation does not offer it to them
    assert b"/security/audit/" not in client.get("/console/queue/mine/").content
    # and the page answers 403 in the console's layout, saying why
    page = client.get("/security/audit/")
    assert page.status_code == 403
    assert b"The audit trail is open to auditors and admins." in page.content
    assert b"Back to the console" in page.content
    assert client.get("/security/audit/export.csv").status_code == 403


@pytest.mark.django_db
def test_auditors_find_the_trail_in_the_navigation(client, auditor):
    client.force_login(auditor)
    assert b'href="/security/audit/"' in client.get("/console/queue/mine/").content


@pytest.mark.django_db
def test_csv_export_is_scoped_neutralises_formulas_and_is_itself_audited_once(
    client, auditor, trail
):
    # given
    client.force_login(auditor)
    # when
    response = client.get("/security/audit/export.csv", {"action": "auth.login"})
    # then
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    # the auditor's own sign-in (force_login) is a member's sign-in too
    assert sorted(r["actor_label"] for r in rows) == ["auditor-acme", "coordinator-acme"]
    [injected] = [r for r in rows if r["actor_label"] == "coordinator-acme"]
    assert injected["reason"].startswith("'=")
    [export] = AuditEvent.objects.filter(action="audit.exported")
    assert export.actor_id == str(auditor.pk)
    assert export.metadata == {"filters": {"action": "auth.login"}, "rows": 2}
    # metadata is JSON (it was Python's repr: {'changed': ...}), which tools read back
    again = client.get("/security/audit/export.csv", {"action": "audit.exported"})
    rows = list(csv.DictReader(io.StringIO(b"".join(again.streaming_content).decode())))
    assert {"filters": {"action": "auth.login"}, "rows": 2} in [
        json.loads(row["metadata"]) for row in rows
    ]


@pytest.mark.django_db
def test_superuser_export_includes_failed_logins_of_unknown_names(client, admin_user):
    client.post("/login/", {"username": "ghost", "password": "nope-nope-nope"})
    client.force_login(admin_user)
    response = client.get("/security/audit/export.csv")
    body = b"".join(response.streaming_content).decode()
    assert "auth.login_failed" in body
    assert "ghost" in body


@pytest.mark.django_db
def test_the_trail_shows_what_a_configuration_change_changed(client, auditor, org):
    # the from -> to of a settings change lived only in the CSV's metadata
    from programs.actors import Actor
    from programs.services import audit_record

    audit_record(
        actor=Actor.system("test"),
        action="webhook_endpoint.updated",
        target=org,
        organization=org.pk,
        metadata={"changed": {"url": {"from": "https://a.example", "to": "https://b.example"}}},
    )
    client.force_login(auditor)

    page = client.get("/security/audit/", {"action": "webhook_endpoint."}).content.decode()

    assert "<code>url</code>: https://a.example → https://b.example" in page


@pytest.mark.django_db
def test_the_last_possible_end_date_is_no_end(client, auditor, trail):
    # the day after 9999-12-31 does not exist: OverflowError, a 500, page and CSV
    client.force_login(auditor)
    page = client.get("/security/audit/", {"date_to": "9999-12-31"})
    export = client.get("/security/audit/export.csv", {"date_to": "9999-12-31"})
    assert page.status_code == 200 and b"auth.login" in page.content
    assert export.status_code == 200
