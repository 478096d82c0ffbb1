"""Values from a URL that no column can hold: an answer, never a 500 (programs.lookups)."""

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from messaging.models import MessageTemplate
from programs.actors import Actor
from programs.models import AuditEvent, OpsException
from programs.services import exception_raise

pytestmark = pytest.mark.django_db

BEYOND_64_BITS = 10**20
LOWEST = -(2**63)
SYSTEM = Actor.system("test")


def raise_item(org, key, program=None):
    item, _ = exception_raise(
        organization=org, kind="manual", title=key, dedup_key=key, program=program, actor=SYSTEM
    )
    return item


def test_lookups_through_a_foreign_key_with_an_integer_no_column_holds(org, program):
    # given
    items = {raise_item(org, "a", program).pk, raise_item(org, "b", program).pk}
    by = OpsException.objects.filter
    # then exact and in match nothing for the value, and the rest of an in list still counts
    assert not by(program=BEYOND_64_BITS).exists()
    assert not by(program__in=[BEYOND_64_BITS]).exists()
    assert set(by(program__in=[program.pk, BEYOND_64_BITS]).values_list("pk", flat=True)) == items
    assert set(by(pk__in=[*items, BEYOND_64_BITS]).values_list("pk", flat=True)) == items
    # comparisons answer as the number line does
    assert not by(program__gt=BEYOND_64_BITS).exists()
    assert by(program__lt=BEYOND_64_BITS).count() == 2
    assert by(program__gte=-BEYOND_64_BITS).count() == 2
    assert not by(program__lte=-BEYOND_64_BITS).exists()
    # the range's own edge is still sent and compared
    assert by(program__gt=LOWEST).count() == 2
    # a many-to-many lookup of Django's own models too
    assert not get_user_model().objects.filter(groups__in=[1, BEYOND_64_BITS]).exists()


def test_duration_lookups_read_text_as_the_form_does(org, program):
    # given
    template = MessageTemplate.objects.create(
        organization=org,
        program=program,
        key="reminder",
        channel="sms",
        body="Hello",
        expires_after=timedelta(days=1, hours=2),
    )
    by = MessageTemplate.objects.filter
    # then
    assert list(by(expires_after="1 02:00:00")) == [template]
    assert list(by(expires_after="P1DT2H")) == [template]
    assert list(by(expires_after__in=["7", "1 02:00:00"])) == [template]
    assert list(by(expires_after__gt="93600")) == []
    with pytest.raises(ValidationError, match="invalid format"):
        by(expires_after="²")


def test_ip_address_lookups_refuse_text_that_is_no_address(org):
    # given
    AuditEvent.objects.create(organization=org, action="x", ip_address="10.0.0.1")
    by = AuditEvent.objects.filter
    # then
    assert by(ip_address="10.0.0.1").count() == 1
    assert by(ip_address__in=[" 10.0.0.1 ", "::1"]).count() == 1
    with pytest.raises(ValidationError, match="valid IPv4 or IPv6"):
        by(ip_address="10.0.0.999")


def _hostile_filters(model):
    """Query-string filters an admin changelist accepts for any field."""
    for field in model._meta.concrete_fields:
        if field.is_relation or isinstance(field, models.IntegerField):
            yield {field.name: str(BEYOND_64_BITS)}
            yield {f"{field.name}__in": f"1,{BEYOND_64_BITS}"}
            yield {field.name: "²"}
        elif isinstance(field, models.DurationField):
            yield {field.name: "²"}
            yield {field.name: "7"}
        elif isinstance(field, models.GenericIPAddressField):
            yield {field.name: "not-an-address"}
            yield {f"{field.name}__in": "10.0.0.1,x"}
            yield {field.name: "::ffff:10.0.0.1"}


@pytest.mark.parametrize(
    "model",
    sorted(admin.site._registry, key=lambda m: m._meta.label),
    ids=lambda m: m._meta.label,
)
def test_every_admin_changelist_answers_any_number_in_its_filters(admin_client, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    for params in _hostile_filters(model):
        response = admin_client.get(url, params)
        # 200 with no rows, or Django's redirect to the "invalid filter" page
        assert response.status_code in (200, 302), (params, response.status_code)
        if response.status_code == 302:
            assert response["Location"].endswith("?e=1"), params


def test_an_admin_filter_by_an_unheld_program_id_shows_no_rows(admin_client, org, program):
    # given
    raise_item(org, "a", program)
    # when
    response = admin_client.get(
        reverse("admin:programs_opsexception_changelist"), {"program": BEYOND_64_BITS}
    )
    # then
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


def test_an_admin_filter_by_a_malformed_duration_is_an_invalid_filter(admin_client):
    response = admin_client.get(
        reverse("admin:messaging_messagetemplate_changelist"), {"expires_after": "²"}
    )
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize("selected", ["abc", "²", "a\x00"])
@pytest.mark.parametrize(
    "changelist", ["admin:auth_group_changelist", "admin:programs_program_changelist"]
)
def test_an_admin_action_posted_with_ids_that_are_no_ids_changes_nothing(
    admin_client, program, selected, changelist
):
    # given
    from django.contrib.auth.models import Group

    Group.objects.get_or_create(name="kept")
    url = reverse(changelist)
    before = (Group.objects.count(), type(program).objects.count())
    # when: Django ran the action on pk__in=[the posted values] (ValueError: a 500)
    response = admin_client.post(
        url, {"action": "delete_selected", "_selected_action": [selected, "1"], "index": "0"}
    )
    # then
    assert response.status_code == 302
    assert (Group.objects.count(), type(program).objects.count()) == before
    page = admin_client.get(response["Location"])
    assert "the ones posted are not ids" in page.content.decode()


def test_a_refused_membership_form_shows_its_error_for_a_user_that_is_no_id(admin_client, org):
    # the autocomplete widget looked the posted user up by id to re-render it
    url = reverse("admin:programs_membership_add")
    response = admin_client.post(url, {"user": "²", "organization": org.pk, "role": "lead"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["user"]


@pytest.mark.django_db
def test_a_date_hierarchy_year_no_date_can_hold_is_the_invalid_filter_page(admin_client):
    # datetime(99999999999999999999, 1, 1) raised OverflowError inside Django: a 500
    response = admin_client.get(
        "/admin/integrations/delivery/", {"created_at__year": "99999999999999999999"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/integrations/delivery/?e=1"
    assert (
        admin_client.get("/admin/integrations/delivery/?created_at__year=2026").status_code == 200
    )


@pytest.mark.django_db
def test_an_admin_json_field_nested_too_deep_is_a_form_error(admin_client, org):
    # json.loads raised RecursionError on "[" * 1000: a 500
    response = admin_client.post(
        "/admin/integrations/webhookendpoint/add/",
        {
            "organization": org.pk,
            "partner_name": "Deep",
            "url": "https://example.org/hook",
            "event_types": "[" * 1000,
            "retry_schedule": "null",
            "breaker_threshold": 10,
            "breaker_probe_seconds": 60,
        },
    )
    assert response.status_code == 200
    assert "deeper than 64 levels" in response.content.decode()
