import pytest
from django.db import DatabaseError, connection, transaction

from programs.actors import Actor
from programs.errors import AppendOnlyError
from programs.models import AuditEvent
from programs.services import audit_record


@pytest.fixture
def row(org):
    return audit_record(
        actor=Actor.system("test"),
        action="program.pause",
        organization=org,
        object_type="programs.program",
        object_id=7,
        from_state="active",
        to_state="paused",
        reason="holiday",
        request_id="req-12345678",
    )


@pytest.mark.django_db
def test_audit_row_records_who_what_from_to_why_and_request(row, org):
    stored = AuditEvent.objects.get(pk=row.pk)
    assert stored.actor_kind == "system" and stored.actor_label == "system:test"
    assert (stored.action, stored.object_type, stored.object_id) == (
        "program.pause",
        "programs.program",
        "7",
    )
    assert (stored.from_state, stored.to_state, stored.reason) == ("active", "paused", "holiday")
    assert stored.request_id == "req-12345678"
    assert stored.organization_id == org.pk


@pytest.mark.django_db
def test_instance_update_and_delete_raise(row):
    row.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()


@pytest.mark.django_db
def test_queryset_update_and_delete_raise(row):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=row.pk).update(reason="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=row.pk).delete()
    assert AuditEvent.objects.get(pk=row.pk).reason == "holiday"


@pytest.mark.django_db
def test_database_trigger_refuses_raw_sql_changes_on_postgres(row):
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL-only; model guards cover SQLite")
    for sql in (
        "UPDATE programs_auditevent SET reason = 'x' WHERE id = %s",
        "DELETE FROM programs_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [row.pk])
    assert AuditEvent.objects.get(pk=row.pk).reason == "holiday"


@pytest.mark.django_db
def test_request_id_defaults_to_the_current_request(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/", HTTP_X_REQUEST_ID="trace-abcdef12")
    assert response["X-Request-ID"] == "trace-abcdef12"
    from config.request_id import get_request_id, reset_request_id, set_request_id

    token = set_request_id("trace-abcdef12")
    try:
        event = audit_record(actor=admin_user, action="test.read")
    finally:
        reset_request_id(token)
    assert event.request_id == "trace-abcdef12" and get_request_id() == ""
    assert event.actor_kind == "user" and event.actor_label == admin_user.username


@pytest.mark.django_db
def test_admin_is_read_only_for_audit_rows(client, admin_user, row):
    client.force_login(admin_user)
    change = client.get(f"/admin/programs/auditevent/{row.pk}/change/")
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert client.get(f"/admin/programs/auditevent/{row.pk}/delete/").status_code == 403
    assert client.get("/admin/programs/auditevent/add/").status_code == 403
    listing = client.get("/admin/programs/auditevent/")
    assert b"delete_selected" not in listing.content
