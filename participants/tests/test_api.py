"""Partner endpoints: referrals, enrollments, transitions, events, batch;
the object-level authorization matrix (S1) and mass assignment (S2)."""

import json
from base64 import b64encode
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.auth import api_client_revoke
from integrations.models import ApiClient
from integrations.tests.api_fixtures import PartnerHttp, make_key, problem
from participants.models import Enrollment, Participant, ParticipantEvent
from programs.actors import Actor

pytestmark = pytest.mark.django_db

REFERRAL = {"program": "dpp", "external_ref": "EHR-7F3K2", "source_system": "epic", "tags": ["a"]}


def event(event_id="evt-1", type_="eligibility.screened", ref="EHR-7F3K2", **data):
    return {
        "id": event_id,
        "type": type_,
        "external_ref": ref,
        "occurred_at": "2026-01-05T10:00:00Z",
        "data": data,
    }


@pytest.fixture
def enrollment_id(partner, program):
    response = partner.post("/api/v1/referrals/", REFERRAL)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_referral_creates_participant_and_enrollment_then_reuses_it(partner, program):
    # when
    first = partner.post("/api/v1/referrals/", REFERRAL)
    second = partner.post("/api/v1/referrals/", REFERRAL)
    # then
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    body = first.json()
    assert body["state"] == "referred" and body["program"] == "dpp"
    assert body["steps"][0]["key"] == "eligibility_review" and body["steps"][0]["due_at"]
    assert body["allowed_transitions"] == ["screen_eligible", "screen_ineligible", "withdraw"]
    assert Participant.objects.count() == 1 and Enrollment.objects.count() == 1


def test_referral_to_unknown_program_is_404_naming_the_field(partner, program):
    response = partner.post("/api/v1/referrals/", {**REFERRAL, "program": "nope"})
    assert response.status_code == 404
    assert problem(response)["errors"][0]["path"] == "$.program"


def test_referral_validation_errors_name_paths(partner, program):
    response = partner.post(
        "/api/v1/referrals/", {"program": "dpp", "timezone": "Mars/Base", "tags": [1, {"x": 1}]}
    )
    body = problem(response)
    assert response.status_code == 422
    paths = {e["path"] for e in body["errors"]}
    assert {"$.external_ref", "$.timezone", "$.tags[1]"} <= paths


def test_referral_with_phi_is_rejected_and_nothing_is_stored(partner, program):
    # when
    response = partner.post("/api/v1/referrals/", {**REFERRAL, "external_ref": "jane@doe.com"})
    # then
    body = problem(response)
    assert response.status_code == 422
    assert body["errors"] == [
        {
            "path": "$.external_ref",
            "kind": "email",
            "code": "phi_detected",
            "message": body["errors"][0]["message"],
        }
    ]
    assert "jane@doe.com" not in response.content.decode()
    assert Participant.objects.count() == 0


def test_mass_assignment_is_ignored(partner, program, other_org):
    # when: read-only and foreign fields are sent along
    response = partner.post(
        "/api/v1/referrals/",
        {**REFERRAL, "state": "active", "organization": other_org.pk, "id": 999, "secret": "x"},
    )
    # then
    assert response.status_code == 201
    enrollment = Enrollment.objects.get()
    assert enrollment.state == "referred" and enrollment.organization_id != other_org.pk
    assert enrollment.pk != 999
    assert "secret" not in response.json() and "organization" not in response.json()


def test_enrollment_list_filters_and_paginates(partner, program):
    # given
    for n in range(5):
        partner.post("/api/v1/referrals/", {**REFERRAL, "external_ref": f"REF-{n}"})
    # when
    page1 = partner.get("/api/v1/enrollments/", {"page_size": 2}).json()
    page2 = partner.http.get(page1["next"]).json()
    by_ref = partner.get("/api/v1/enrollments/", {"external_ref": "REF-3"}).json()
    later = partner.get(
        "/api/v1/enrollments/",
        {"updated_after": (timezone.now() + timedelta(minutes=1)).isoformat()},
    ).json()
    # then
    assert len(page1["results"]) == 2 and len(page2["results"]) == 2
    assert {r["id"] for r in page1["results"]}.isdisjoint(r["id"] for r in page2["results"])
    assert [r["external_ref"] for r in by_ref["results"]] == ["REF-3"]
    assert later["results"] == []
    assert partner.get("/api/v1/enrollments/", {"state": "nope"}).status_code == 422


@pytest.mark.parametrize(
    "path", ["/api/v1/enrollments/", "/api/v1/exceptions/", "/api/v1/webhook-endpoints/"]
)
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",  # not base64: DRF's "Invalid cursor" was a 404
        b64encode(b"p=notadate").decode(),  # a position no ordering field reads: 500
        b64encode(b"p=x").decode(),
        b64encode(b"r=1&p=%00").decode(),  # a NUL reached PostgreSQL: 500
    ],
)
def test_a_tampered_cursor_is_422_naming_it(partner, program, path, cursor):
    partner.post("/api/v1/referrals/", REFERRAL)

    response = partner.get(path, {"cursor": cursor})

    assert response.status_code == 422, response.content
    assert problem(response)["errors"][0]["path"] == "query:cursor"


def test_a_cursor_past_every_id_is_an_empty_page(partner, program):
    partner.post("/api/v1/referrals/", REFERRAL)
    beyond_64_bits = b64encode(b"p=99999999999999999999999").decode()

    response = partner.get("/api/v1/exceptions/", {"cursor": beyond_64_bits, "state": "open"})

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_enrollment_list_query_count_is_constant(partner, program, django_assert_max_num_queries):
    for n in range(10):
        partner.post("/api/v1/referrals/", {**REFERRAL, "external_ref": f"REF-{n}"})
    with django_assert_max_num_queries(6):
        assert len(partner.get("/api/v1/enrollments/").json()["results"]) == 10


def test_transition_returns_new_state_or_409_with_allowed(partner, enrollment_id):
    # when
    ok = partner.post(
        f"/api/v1/enrollments/{enrollment_id}/transitions/", {"transition": "screen_eligible"}
    )
    conflict = partner.post(
        f"/api/v1/enrollments/{enrollment_id}/transitions/", {"transition": "screen_eligible"}
    )
    # then
    assert ok.status_code == 200 and ok.json()["state"] == "eligible"
    body = problem(conflict)
    assert conflict.status_code == 409
    assert body["current_state"] == "eligible"
    assert body["allowed_transitions"] == ["invite", "withdraw"]


def test_transition_outside_the_partners_rights_is_403(partner, enrollment_id):
    response = partner.post(
        f"/api/v1/enrollments/{enrollment_id}/transitions/", {"transition": "complete"}
    )
    assert response.status_code == 403


def test_withdraw_needs_a_reason(partner, enrollment_id):
    url = f"/api/v1/enrollments/{enrollment_id}/transitions/"
    missing = partner.post(url, {"transition": "withdraw"})
    assert missing.status_code == 422
    done = partner.post(url, {"transition": "withdraw", "reason": "moved away"})
    assert done.json()["state"] == "withdrawn"


def test_unknown_transition_is_422(partner, enrollment_id):
    response = partner.post(
        f"/api/v1/enrollments/{enrollment_id}/transitions/", {"transition": "explode"}
    )
    assert response.status_code == 422
    assert problem(response)["errors"][0]["path"] == "$.transition"


def test_event_is_accepted_applied_and_idempotent_on_id(partner, enrollment_id):
    # when
    first = partner.post("/api/v1/events/", event())
    replay = partner.post("/api/v1/events/", event(type_="something.else"))
    # then
    assert first.status_code == 202 and replay.status_code == 202
    assert first.content == replay.content
    assert first.json()["disposition"] == "matched"
    assert ParticipantEvent.objects.count() == 1
    detail = partner.get(f"/api/v1/enrollments/{enrollment_id}/").json()
    assert detail["steps"][0]["state"] == "completed"
    assert detail["steps"][0]["completed_at"] == "2026-01-05T10:00:00Z"


def test_event_validation_errors(partner, program):
    response = partner.post(
        "/api/v1/events/", {"id": "", "type": "NoDots", "occurred_at": "yesterday"}
    )
    paths = {e["path"] for e in problem(response)["errors"]}
    assert response.status_code == 422
    assert {"$.id", "$.type", "$.external_ref", "$.occurred_at"} <= paths


def test_batch_returns_per_item_results_and_bad_items_do_not_fail_others(partner, enrollment_id):
    # given
    items = [
        event("b-1"),
        {"id": "b-2"},
        event("b-3", ref="EHR-9", patient={"phone": "555-123-4567"}),
        event("b-4", type_="consent.recorded"),
    ]
    # when
    response = partner.post("/api/v1/events/batch/", {"events": items})
    # then
    body = response.json()
    assert response.status_code == 200
    assert [r["status"] for r in body["results"]] == [202, 422, 422, 202]
    assert body["accepted"] == 2 and body["rejected"] == 2
    assert body["results"][2]["errors"][0]["path"] == "$.events[2].data.patient.phone"
    assert "555-123-4567" not in response.content.decode()
    assert set(ParticipantEvent.objects.values_list("event_id", flat=True)) == {"b-1", "b-4"}


def test_a_nul_character_in_event_data_is_422_naming_its_path_single_and_batch(
    partner, enrollment_id
):
    # given: PostgreSQL stores no NUL character in text or jsonb; it used to
    # fail at the INSERT (500, and in a batch a "retry" that never succeeds)
    in_value = event("n-1", note=["fine", "a\u0000b"])
    in_key = event("n-2", **{"k\u0000": 1})
    # when
    single = partner.post("/api/v1/events/", in_value)
    batch = partner.post("/api/v1/events/batch/", {"events": [in_key, event("n-3")]})
    # then
    assert single.status_code == 422
    [error] = problem(single)["errors"]
    assert error["path"] == "$.data.note[1]"
    assert "NUL character" in error["message"]
    assert [r["status"] for r in batch.json()["results"]] == [422, 202]
    assert batch.json()["results"][0]["errors"][0]["path"] == "$.events[0].data['k\\u0000']"
    assert set(ParticipantEvent.objects.values_list("event_id", flat=True)) == {"n-3"}


def test_an_identifier_used_as_a_key_is_422_and_no_error_repeats_it(partner, enrollment_id):
    # given: an email address as a key of event data (the path used to be
    # $.data['jane.doe@example.org'], repeating it in the error)
    leaky = event("k-1", **{"jane.doe@example.org": 1})
    # when
    single = partner.post("/api/v1/events/", leaky)
    batch = partner.post("/api/v1/events/batch/", {"events": [leaky]})
    # then
    assert single.status_code == 422
    assert problem(single)["errors"][0] == {
        "path": "$.data",
        "kind": "email",
        "code": "phi_detected",
        "message": "looks like an e-mail address (found in one of its keys); "
        "send an opaque reference instead",
    }
    assert batch.json()["results"][0]["errors"][0]["path"] == "$.events[0].data"
    assert b"jane" not in single.content and b"jane" not in batch.content
    assert not ParticipantEvent.objects.exists()


@pytest.mark.parametrize(
    ("raw_data", "path"),
    [
        ('{"note": ["fine", "a\\udc00b"]}', "$.data.note[1]"),
        ('{"k\\udc00": 1}', "$.data['k\\udc00']"),
        ('{"\\ud800": {"n": 1}}', "$.data['\\ud800']"),
    ],
)
def test_a_lone_surrogate_in_event_data_is_422_naming_its_path_single_and_batch(
    partner, enrollment_id, raw_data, path
):
    # given: JSON's "\udc00" decodes to a string that is no valid Unicode;
    # PostgreSQL's jsonb refused it at the INSERT (500, and in a batch a
    # "retry" that never succeeds), SQLite stored it
    def body(event_id):
        return (
            f'{{"id": "{event_id}", "type": "eligibility.screened", "external_ref": "EHR-7F3K2",'
            f' "occurred_at": "2026-01-05T10:00:00Z", "data": {raw_data}}}'
        )

    # when
    single = partner.post("/api/v1/events/", raw=body("s-1"))
    batch = partner.post(
        "/api/v1/events/batch/", raw=f'{{"events": [{body("s-2")}, {json.dumps(event("s-3"))}]}}'
    )
    # then: the path is printable text, the surrogate written as an escape
    assert single.status_code == 422, single.content
    [error] = problem(single)["errors"]
    assert error["path"] == path
    assert "lone UTF-16 surrogate" in error["message"]
    assert batch.status_code == 200, batch.content
    assert [r["status"] for r in batch.json()["results"]] == [422, 202]
    assert batch.json()["results"][0]["errors"][0]["path"] == "$.events[0]" + path[1:]
    assert set(ParticipantEvent.objects.values_list("event_id", flat=True)) == {"s-3"}


def test_phi_under_a_key_holding_a_lone_surrogate_is_named_in_printable_text(partner):
    raw = (
        '{"id": "p-1", "type": "eligibility.screened", "external_ref": "EHR-7F3K2",'
        ' "occurred_at": "2026-01-05T10:00:00Z", "data": {"\\ud800": {"email": "x@y.org"}}}'
    )

    response = partner.post("/api/v1/events/", raw=raw)

    assert response.status_code == 422
    assert problem(response)["errors"][0]["path"] == "$.data['\\ud800'].email"


def test_occurred_at_without_an_offset_is_422_single_and_batch(partner, enrollment_id):
    # given: local time without an offset (DRF used to read it as the
    # server's timezone and store it, hours off, without a word)
    local = event("tz-1")
    local["occurred_at"] = "2026-01-05T10:00:00"
    # when
    single = partner.post("/api/v1/events/", local)
    batch = partner.post("/api/v1/events/batch/", {"events": [local, event("tz-2")]})
    # then
    assert single.status_code == 422
    [error] = problem(single)["errors"]
    assert error["path"] == "$.occurred_at" and "offset" in error["message"]
    assert [r["status"] for r in batch.json()["results"]] == [422, 202]
    assert list(ParticipantEvent.objects.values_list("event_id", flat=True)) == ["tz-2"]


def test_a_batch_item_that_is_no_object_fails_alone(partner, enrollment_id):
    numeric_id = {**event(), "id": 123}

    response = partner.post(
        "/api/v1/events/batch/", {"events": [event("b-1"), "notadict", 7, numeric_id]}
    )

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 422, 202]
    assert results[1]["errors"][0]["path"] == "$.events[1]"
    assert results[3]["id"] == "123"  # stored as text, reported as stored
    assert set(ParticipantEvent.objects.values_list("event_id", flat=True)) == {"b-1", "123"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/enrollments/", {"state": "jane.doe@example.org"}),
        ("/api/v1/exceptions/", {"severity": "123-45-6789"}),
        ("/api/v1/exceptions/", {"state": "jane.doe@example.org"}),
    ],
)
def test_an_invalid_choice_is_422_naming_the_choices_without_repeating_the_value(
    partner, program, path, params
):
    response = partner.get(path, params)

    assert response.status_code == 422
    assert b"jane" not in response.content and b"6789" not in response.content
    assert "must be one of:" in problem(response)["errors"][0]["message"]


def test_an_unknown_transition_is_422_without_repeating_it(partner, enrollment_id):
    response = partner.post(
        f"/api/v1/enrollments/{enrollment_id}/transitions/", {"transition": "jane_doe_secret"}
    )

    assert response.status_code == 422
    assert b"jane_doe_secret" not in response.content
    [error] = problem(response)["errors"]
    assert error["path"] == "$.transition" and "withdraw" in error["message"]


def test_withdraw_without_a_reason_is_422_naming_the_reason_field(partner, enrollment_id):
    response = partner.post(
        f"/api/v1/enrollments/{enrollment_id}/transitions/", {"transition": "withdraw"}
    )

    assert response.status_code == 422
    [error] = problem(response)["errors"]
    assert error["path"] == "$.reason"
    assert error["message"] == "a reason is required to withdraw an enrollment"


def test_an_event_from_more_than_a_day_ahead_is_422_and_changes_nothing(
    partner, enrollment_id, settings
):
    # given a sender whose clock runs years ahead, and one a few hours ahead
    settings.BATON_EVENT_MAX_FUTURE = timedelta(hours=24)
    far = event("f-1")
    far["occurred_at"] = (timezone.now() + timedelta(days=365 * 70)).isoformat()
    near = event("f-2")
    near["occurred_at"] = (timezone.now() + timedelta(hours=5)).isoformat()
    # when
    single = partner.post("/api/v1/events/", far)
    batch = partner.post("/api/v1/events/batch/", {"events": [far, near]})
    # then
    assert single.status_code == 422
    [error] = problem(single)["errors"]
    assert error["path"] == "$.occurred_at"
    assert "at most 24 hours ahead" in error["message"]
    assert [r["status"] for r in batch.json()["results"]] == [422, 202]
    assert batch.json()["results"][0]["errors"][0]["path"] == "$.events[0].occurred_at"
    assert list(ParticipantEvent.objects.values_list("event_id", flat=True)) == ["f-2"]
    assert Enrollment.objects.get(pk=enrollment_id).last_event_at < timezone.now() + timedelta(
        days=1
    )


def test_batch_is_capped_at_500(partner, program):
    response = partner.post(
        "/api/v1/events/batch/", {"events": [event(f"e{i}") for i in range(501)]}
    )
    assert response.status_code == 422
    assert problem(response)["errors"][0]["path"] == "$.events"


# --- S1: the object-level authorization matrix ----------------------------------------


def _endpoints(enrollment_id):
    return [
        ("get", "/api/v1/programs/", None),
        ("get", "/api/v1/exceptions/", None),
        ("get", "/api/v1/enrollments/", None),
        ("get", f"/api/v1/enrollments/{enrollment_id}/", None),
        (
            "post",
            f"/api/v1/enrollments/{enrollment_id}/transitions/",
            {"transition": "withdraw", "reason": "x"},
        ),
        ("post", "/api/v1/referrals/", REFERRAL),
        ("post", "/api/v1/events/", event("matrix-1")),
        ("post", "/api/v1/events/batch/", {"events": [event("matrix-2")]}),
    ]


@pytest.mark.parametrize("who", ["other_org", "no_key", "expired", "revoked", "garbage"])
def test_authorization_matrix(org, other_org, program, partner, enrollment_id, who):
    # given: an enrollment of org; a caller who must not reach it
    if who == "other_org":
        http = PartnerHttp(make_key(other_org)[1])
    elif who == "no_key":
        http = PartnerHttp(None)
    elif who == "expired":
        client, raw = make_key(org)
        ApiClient.objects.filter(pk=client.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        http = PartnerHttp(raw)
    elif who == "revoked":
        client, raw = make_key(org)
        api_client_revoke(client_id=client.pk, actor=Actor.system("test"))
        http = PartnerHttp(raw)
    else:
        http = PartnerHttp("btn_aaaaaaaaaa_" + "x" * 43)
    before = (Enrollment.objects.get().state, ParticipantEvent.objects.count())
    # when / then
    for method, path, body in _endpoints(enrollment_id):
        response = http.get(path) if method == "get" else http.post(path, body)
        text = response.content.decode()
        if who == "other_org":
            # its own empty world: lists are empty, our ids are 404, writes land in its org
            assert response.status_code in (200, 201, 202, 404), (path, response.status_code)
            assert "EHR-7F3K2" not in text or path in (
                "/api/v1/referrals/",
                "/api/v1/events/",
                "/api/v1/events/batch/",
            )
            if path.startswith(f"/api/v1/enrollments/{enrollment_id}"):
                assert response.status_code == 404
        else:
            assert response.status_code == 401, (who, path, response.status_code)
            assert "EHR-7F3K2" not in text and "dpp" not in text
    assert Enrollment.objects.filter(organization=org).get().state == before[0]
    if who != "other_org":
        assert ParticipantEvent.objects.count() == before[1]


def test_other_org_sees_nothing_of_ours(org, other_org, program, partner, enrollment_id):
    # given
    http = PartnerHttp(make_key(other_org)[1])
    # when
    listing = http.get("/api/v1/enrollments/").json()
    programs = http.get("/api/v1/programs/").json()
    referral = http.post("/api/v1/referrals/", REFERRAL)
    # then
    assert listing["results"] == [] and programs == []
    assert referral.status_code == 404  # our program slug is not theirs


def test_scoped_key_cannot_reach_other_programs_enrollments(
    org, program, dpp_document, partner, enrollment_id
):
    # given: a key scoped to a different program of the same organization
    from programs.services import program_activate, program_load_definition

    doc = {**dpp_document, "program": {**dpp_document["program"], "slug": "other"}}
    version, _ = program_load_definition(organization=org, document=doc, actor=Actor.system("t"))
    other = program_activate(program_id=version.program_id, actor=Actor.system("t"))
    http = PartnerHttp(make_key(org, programs=[other])[1])
    # when / then
    assert http.get(f"/api/v1/enrollments/{enrollment_id}/").status_code == 404
    assert http.get("/api/v1/enrollments/").json()["results"] == []
    assert http.post("/api/v1/referrals/", REFERRAL).status_code == 404
