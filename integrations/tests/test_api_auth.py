"""API keys: hashed at rest, shown once, expirable, revocable; 401/403 as problem+json."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from integrations.auth import api_client_revoke
from integrations.models import ApiClient
from integrations.tests.api_fixtures import PartnerHttp, make_key, problem
from programs.actors import Actor
from programs.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_key_is_stored_only_as_a_hash_and_creation_is_audited(org):
    # given / when
    client, raw = make_key(org)
    # then
    stored = ApiClient.objects.get(pk=client.pk)
    assert raw.startswith(f"btn_{stored.prefix}_")
    assert raw not in stored.key_hash and len(stored.key_hash) == 64
    audit = AuditEvent.objects.get(action="api_client.created")
    assert raw not in str(audit.metadata)


def test_valid_key_lists_programs_and_records_last_use(org, program):
    # given
    client, raw = make_key(org)
    # when
    response = PartnerHttp(raw).get("/api/v1/programs/")
    # then
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()] == ["dpp"]
    client.refresh_from_db()
    assert client.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Basic abc", "Bearer btn_aaaaaaaaaa_wrong", "Bearer a b"],
)
def test_missing_or_bad_key_gets_401_problem(org, header):
    # given
    http = PartnerHttp(None)
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    # when
    response = http.get("/api/v1/programs/", **extra)
    # then
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert problem(response)["status"] == 401


def test_revoked_key_fails_on_the_next_request(org, program):
    # given
    client, raw = make_key(org)
    http = PartnerHttp(raw)
    assert http.get("/api/v1/programs/").status_code == 200
    # when
    api_client_revoke(client_id=client.pk, actor=Actor.system("test"), reason="leaked")
    # then
    assert http.get("/api/v1/programs/").status_code == 401
    assert AuditEvent.objects.filter(action="api_client.revoked").count() == 1


def test_expired_key_fails(org, program):
    # given
    client, raw = make_key(org, expires_at=timezone.now() + timedelta(hours=1))
    http = PartnerHttp(raw)
    assert http.get("/api/v1/programs/").status_code == 200
    # when
    ApiClient.objects.filter(pk=client.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # then
    assert http.get("/api/v1/programs/").status_code == 401


def test_tampered_secret_with_a_real_prefix_fails(org, program):
    # given
    _client, raw = make_key(org)
    tampered = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    # when
    response = PartnerHttp(tampered).get("/api/v1/programs/")
    # then
    assert response.status_code == 401


def test_read_only_key_cannot_post(org, program):
    # given
    _client, raw = make_key(org, read_only=True)
    http = PartnerHttp(raw)
    # when
    response = http.post("/api/v1/events/", {"id": "x"})
    # then
    assert http.get("/api/v1/programs/").status_code == 200
    assert response.status_code == 403
    assert problem(response)["detail"] == "This API key is read-only."


def test_program_scoped_key_sees_only_its_programs(org, program, dpp_document):
    # given: a second program in the same organization
    from programs.services import program_load_definition

    other_doc = {**dpp_document, "program": {**dpp_document["program"], "slug": "other"}}
    program_load_definition(organization=org, document=other_doc, actor=Actor.system("t"))
    _client, raw = make_key(org, programs=[program])
    # when
    slugs = [p["slug"] for p in PartnerHttp(raw).get("/api/v1/programs/").json()]
    all_slugs = [p["slug"] for p in PartnerHttp(make_key(org)[1]).get("/api/v1/programs/").json()]
    # then
    assert slugs == ["dpp"]
    assert all_slugs == ["dpp", "other"]


def test_create_api_key_command_prints_a_working_key(org, program):
    # given
    out, err = StringIO(), StringIO()
    # when
    call_command(
        "create_api_key",
        "--org",
        "acme",
        "--name",
        "Scale vendor",
        "--program",
        "dpp",
        "--read-only",
        stdout=out,
        stderr=err,
    )
    # then
    raw = out.getvalue().strip()
    client = ApiClient.objects.get(name="Scale vendor")
    assert not client.can_write
    assert list(client.programs.values_list("slug", flat=True)) == ["dpp"]
    assert PartnerHttp(raw).get("/api/v1/programs/").status_code == 200
    assert "shown" in err.getvalue() or "cannot be shown" in err.getvalue()


def test_create_api_key_command_rejects_unknown_org(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no organization"):
        call_command("create_api_key", "--org", "nope", "--name", "x", stdout=StringIO())


def test_admin_add_shows_the_key_once(org, program, client, django_user_model):
    # given
    admin = django_user_model.objects.create_superuser("root", "r@example.invalid", "pw-123456789")
    client.force_login(admin)
    # when
    response = client.post(
        "/admin/integrations/apiclient/add/",
        {"organization": org.pk, "name": "Coaching tool", "permission": "write"},
        follow=True,
    )
    # then
    created = ApiClient.objects.get(name="Coaching tool")
    page = response.content.decode()
    assert f"btn_{created.prefix}_" in page
    change_page = client.get(f"/admin/integrations/apiclient/{created.pk}/change/").content.decode()
    assert f"btn_{created.prefix}_" not in change_page


def test_admin_audits_a_keys_scope_at_creation_and_its_changes(
    org, program, client, django_user_model
):
    # the creation row said "programs": [] (all programs) for a key limited to
    # dpp, and a later change named the fields without their values
    from programs.models import AuditEvent

    admin = django_user_model.objects.create_superuser("root", "r@example.invalid", "pw-123456789")
    client.force_login(admin)
    client.post(
        "/admin/integrations/apiclient/add/",
        {"organization": org.pk, "name": "Scoped", "permission": "write", "programs": [program.pk]},
    )
    created = ApiClient.objects.get(name="Scoped")
    assert list(created.programs.all()) == [program]
    row = AuditEvent.objects.get(action="api_client.created", object_id=str(created.pk))
    assert row.metadata["programs"] == [program.slug]

    client.post(
        f"/admin/integrations/apiclient/{created.pk}/change/",
        {"name": "Scoped", "permission": "write", "programs": []},
    )

    updated = AuditEvent.objects.get(action="api_client.updated", object_id=str(created.pk))
    assert updated.metadata["changed"]["programs"] == {"from": [program.pk], "to": []}


@pytest.mark.django_db
def test_admin_key_list_shows_scopes_expiry_and_last_use(client, admin_user, org, program):
    scoped, _ = make_key(org, name="scoped-key")
    scoped.programs.add(program)
    make_key(org, name="open-key")
    client.force_login(admin_user)
    page = client.get("/admin/integrations/apiclient/").content.decode()
    assert "Program scopes" in page and "Expires" in page and "Last used" in page
    assert program.slug in page and "all programs" in page


@pytest.mark.django_db
def test_admin_phi_allowance_reason_has_a_limit(client, admin_user, program):
    client.force_login(admin_user)
    response = client.post(
        "/admin/integrations/programphiallowance/add/",
        {"program": program.pk, "json_path": "$.data.serial", "reason": "x" * 2001},
    )
    assert response.status_code == 200
    assert "Ensure this value has at most 2000 characters" in response.content.decode()
    ok = client.post(
        "/admin/integrations/programphiallowance/add/",
        {"program": program.pk, "json_path": "$.data.serial", "reason": "scale returns"},
    )
    assert ok.status_code == 302


@pytest.mark.django_db
def test_admin_refuses_a_key_scoped_to_another_organizations_program(
    client, admin_user, org, other_org, dpp_document
):
    # the service refused it during save: a 500
    from programs.actors import Actor
    from programs.services import program_load_definition

    version, _ = program_load_definition(
        organization=other_org, document=dpp_document, actor=Actor.system("t")
    )
    client.force_login(admin_user)
    response = client.post(
        "/admin/integrations/apiclient/add/",
        {
            "organization": org.pk,
            "name": "x",
            "permission": "read",
            "programs": [version.program_id],
        },
    )
    assert response.status_code == 200
    assert "not programs of" in response.content.decode()
    assert not ApiClient.objects.filter(name="x").exists()
