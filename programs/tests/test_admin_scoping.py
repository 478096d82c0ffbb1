"""A user sees and acts only within their organizations, in the admin too."""

import pytest

from programs.actors import Actor
from programs.models import Program
from programs.services import exception_raise, program_load_definition


@pytest.fixture
def other_program(other_org, dpp_document):
    version, _ = program_load_definition(
        organization=other_org, document=dpp_document, actor=Actor.system("test")
    )
    return version.program


@pytest.fixture
def other_item(other_org):
    item, _ = exception_raise(
        organization=other_org, kind="manual", title="Globex secret item", dedup_key="g:1"
    )
    return item


@pytest.mark.django_db
def test_coordinator_of_org_a_cannot_see_org_b_in_admin_lists(
    client, coordinator, program, other_program, other_item
):
    client.force_login(coordinator)
    programs = client.get("/admin/programs/program/")
    assert programs.status_code == 200
    assert b"Acme" in programs.content or program.name.encode() in programs.content
    assert f"/admin/programs/program/{other_program.pk}/".encode() not in programs.content
    items = client.get("/admin/programs/opsexception/")
    assert b"Globex secret item" not in items.content
    orgs = client.get("/admin/programs/organization/")
    assert b"Globex Care" not in orgs.content


@pytest.mark.django_db
def test_coordinator_gets_no_object_page_for_org_b(client, coordinator, other_program, other_item):
    client.force_login(coordinator)
    for url in (
        f"/admin/programs/program/{other_program.pk}/change/",
        f"/admin/programs/opsexception/{other_item.pk}/change/",
    ):
        response = client.get(url, follow=True)
        assert b"Globex" not in response.content
        assert b"doesn" in response.content  # "... with ID ... doesn't exist"


@pytest.mark.django_db
def test_superuser_sees_every_organization(client, admin_user, program, other_program):
    client.force_login(admin_user)
    response = client.get("/admin/programs/program/")
    assert f"/admin/programs/program/{other_program.pk}/".encode() in response.content


@pytest.mark.django_db
def test_coordinator_can_see_the_demo_program_after_login(client, coordinator, program):
    # the "done when": a coordinator logs in and sees the program
    assert client.login(username=coordinator.username, password="correct-horse-battery-staple")
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"Baton operations console" in index.content
    change = client.get(f"/admin/programs/program/{program.pk}/change/")
    assert change.status_code == 200
    assert b"Diabetes Prevention Program" in change.content


@pytest.mark.django_db
def test_auditor_reads_but_cannot_change(client, auditor, program):
    client.force_login(auditor)
    assert client.get(f"/admin/programs/program/{program.pk}/change/").status_code == 200
    response = client.post(
        f"/admin/programs/program/{program.pk}/transition/pause/", {"reason": "x"}
    )
    assert response.status_code in (302, 403)
    program.refresh_from_db()
    assert program.state == "active"


@pytest.mark.django_db
def test_lead_pauses_program_through_admin_button_and_it_is_audited(client, lead, program):
    client.force_login(lead)
    page = client.get(f"/admin/programs/program/{program.pk}/change/")
    assert b"/transition/pause/" in page.content
    assert b"/transition/activate/" not in page.content  # not allowed from active
    client.post(f"/admin/programs/program/{program.pk}/transition/pause/", {"reason": "review"})
    program = Program.objects.get(pk=program.pk)
    assert program.state == "paused"
    from programs.models import AuditEvent

    row = AuditEvent.objects.get(action="program.pause", object_id=str(program.pk))
    assert (row.actor_label, row.reason) == (lead.username, "review")


@pytest.mark.django_db
def test_roles_are_groups_with_permissions(coordinator, lead, auditor):
    assert coordinator.has_perm("programs.change_opsexception")
    assert not coordinator.has_perm("programs.bulk_act_opsexception")
    assert lead.has_perm("programs.bulk_act_opsexception")
    assert auditor.has_perm("programs.view_opsexception")
    assert not auditor.has_perm("programs.change_opsexception")
    for user in (coordinator, lead, auditor):
        assert not user.has_perm("programs.delete_auditevent")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["coordinator", "lead", "auditor"])
def test_a_membership_read_only_shows_the_user_without_a_link_that_would_403(client, role, request):
    from programs.models import Membership

    viewer = request.getfixturevalue(role)
    membership = Membership.objects.get(user=viewer)
    client.force_login(viewer)

    page = client.get(f"/admin/programs/membership/{membership.pk}/change/")

    assert page.status_code == 200
    assert viewer.username in page.content.decode()
    assert f"/admin/auth/user/{viewer.pk}/change/" not in page.content.decode()
    assert client.get(f"/admin/auth/user/{viewer.pk}/change/").status_code == 403


@pytest.fixture
def root(client):
    from programs.tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db
def test_a_role_changed_in_the_admin_changes_the_users_permissions(root, org, lead):
    # given a lead; saved directly, the membership said "auditor" while the
    # user kept the lead group's permissions
    from programs.models import AuditEvent, Membership

    membership = Membership.objects.get(user=lead)
    url = f"/admin/programs/membership/{membership.pk}/change/"
    # when
    response = root.post(url, {"user": lead.pk, "organization": org.pk, "role": "auditor"})
    # then
    assert response.status_code == 302
    lead.refresh_from_db()
    assert set(lead.groups.values_list("name", flat=True)) == {"auditor"}
    granted = AuditEvent.objects.filter(action="membership.granted").latest("id")
    assert (granted.from_state, granted.to_state) == ("lead", "auditor")
    assert granted.actor_label == "root"


@pytest.mark.django_db
def test_a_membership_deleted_in_the_admin_takes_the_role_away(root, org, lead):
    from programs.models import AuditEvent, Membership

    membership = Membership.objects.get(user=lead)

    root.post(f"/admin/programs/membership/{membership.pk}/delete/", {"post": "yes"})

    assert not Membership.objects.filter(user=lead).exists()
    assert not lead.groups.exists()
    assert AuditEvent.objects.filter(action="membership.revoked", from_state="lead").exists()


@pytest.mark.django_db
def test_a_program_edited_in_the_admin_is_audited_from_and_to(root, program):
    from programs.models import AuditEvent

    form = {
        "organization": program.organization_id,
        "name": program.name,
        "slug": program.slug,
        "timezone": "Europe/Berlin",
        "quiet_hours_start": program.quiet_hours_start or "",
        "quiet_hours_end": program.quiet_hours_end or "",
        "programversion_set-TOTAL_FORMS": "0",
        "programversion_set-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    }
    response = root.post(f"/admin/programs/program/{program.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    row = AuditEvent.objects.get(action="program.changed")
    assert row.metadata["changed"]["timezone"] == {"from": program.timezone, "to": "Europe/Berlin"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changelist",
    [
        "/admin/programs/program/",
        "/admin/programs/opsexception/",
        "/admin/participants/enrollment/",
        "/admin/integrations/apiclient/",
    ],
)
def test_filter_menus_do_not_name_other_organizations(
    client, coordinator, program, other_program, other_item, changelist
):
    # the rows were scoped, but the organization and program filter menus
    # listed every organization and program of the installation
    from participants.services import enrollment_open, participant_upsert

    participant, _ = participant_upsert(
        organization=program.organization, external_ref="R-1", actor=Actor.system("t")
    )
    enrollment_open(participant=participant, program=program, actor=Actor.system("t"))
    client.force_login(coordinator)

    page = client.get(changelist)

    assert page.status_code == 200
    assert b"Globex" not in page.content
