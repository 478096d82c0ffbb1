"""Errors under /api/ are RFC 9457 problem+json; limits (413, page size, 429)."""

import pytest
from django.test import override_settings
from rest_framework.settings import api_settings

from integrations.problems import MAX_BODY_BYTES, MAX_JSON_DEPTH
from integrations.tests.api_fixtures import PartnerHttp, make_key, problem
from programs.actors import Actor
from programs.services import exception_raise

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_a_problem_404(partner):
    response = partner.get("/api/v1/does-not-exist/")
    assert response.status_code == 404
    assert problem(response)["instance"] == "/api/v1/does-not-exist/"


def test_wrong_method_is_a_problem_405(partner):
    response = partner.post("/api/v1/programs/", {})
    assert response.status_code == 405
    assert problem(response)["status"] == 405


def test_non_json_body_is_a_problem_415(partner):
    response = partner.post("/api/v1/programs/", raw="a=b", content_type="text/plain")
    assert response.status_code in (405, 415)
    assert problem(response)


def test_malformed_json_is_a_problem_400_without_echo(partner):
    response = partner.post("/api/v1/events/", raw='{"secret-ish": "555-12')
    body = problem(response)
    assert response.status_code == 400
    assert "555-12" not in response.content.decode()
    assert body["type"].endswith("malformed-body")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 900, 100_000])
def test_json_nested_too_deep_is_a_problem_400_naming_the_limit(partner, depth):
    # given: 900 levels (1.8 KB) used to exhaust Python's stack in the PHI
    # guard, and 100,000 the JSON decoder's: a 500 either way
    nested = "[" * depth + "]" * depth
    raw = (
        '{"id": "deep", "type": "x.y", "external_ref": "r", '
        f'"occurred_at": "2026-01-05T10:00:00Z", "data": {{"a": {nested}}}}}'
    )
    # when
    response = partner.post("/api/v1/events/", raw=raw)
    # then
    assert response.status_code == 400
    assert f"deeper than {MAX_JSON_DEPTH} levels" in problem(response)["detail"]


def test_json_at_the_depth_limit_is_read(partner, program):
    # the body is level 1 and data level 2: the list may go MAX_JSON_DEPTH - 2 deep
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    raw = (
        '{"id": "deep-ok", "type": "x.y", "external_ref": "r", '
        f'"occurred_at": "2026-01-05T10:00:00Z", "data": {{"a": {nested}}}}}'
    )
    assert partner.post("/api/v1/events/", raw=raw).status_code == 202


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_a_number_beyond_a_double_is_a_problem_400_saying_so(partner, number):
    # given: Python reads it as infinity, which PostgreSQL's jsonb refuses (a 500)
    raw = (
        '{"id": "big", "type": "x.y", "external_ref": "r", '
        f'"occurred_at": "2026-01-05T10:00:00Z", "data": {{"n": {number}}}}}'
    )
    # when
    response = partner.post("/api/v1/events/", raw=raw)
    # then
    assert response.status_code == 400
    assert "beyond the range of a double" in problem(response)["detail"]


def test_body_over_one_mebibyte_is_413(partner):
    # given
    raw = '{"pad": "' + "x" * MAX_BODY_BYTES + '"}'
    # when
    response = partner.post("/api/v1/events/", raw=raw)
    # then
    assert response.status_code == 413
    assert problem(response)["status"] == 413


def test_page_size_is_capped(partner):
    for size in ("0", "201", "10000", "abc", "-1"):
        response = partner.get("/api/v1/exceptions/", {"page_size": size})
        assert response.status_code == 422, size
        assert problem(response)["errors"][0]["path"] == "query:page_size"
    assert partner.get("/api/v1/exceptions/", {"page_size": "200"}).status_code == 200


def test_invalid_filter_is_422_with_path(partner):
    response = partner.get("/api/v1/exceptions/", {"state": "bogus"})
    assert response.status_code == 422
    assert problem(response)["errors"][0]["path"] == "query:state"


def test_flood_is_throttled_with_retry_after(org, program):
    # given
    _client, raw = make_key(org)
    http = PartnerHttp(raw)
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "api_client": "3/min"}
    with override_settings(
        REST_FRAMEWORK={
            **__import__("django.conf").conf.settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": rates,
        }
    ):
        from django.core.cache import cache

        cache.clear()
        # when
        statuses = [http.get("/api/v1/programs/").status_code for _ in range(5)]
        throttled = http.get("/api/v1/programs/")
    # then
    assert statuses[:3] == [200, 200, 200]
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) >= 1
    assert problem(throttled)["status"] == 429


def test_throttle_is_per_key(org, program):
    # given: one key exhausted, another fresh
    first, second = PartnerHttp(make_key(org)[1]), PartnerHttp(make_key(org)[1])
    from django.conf import settings
    from django.core.cache import cache

    rates = {"api_client": "2/min"}
    with override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    ):
        cache.clear()
        for _ in range(3):
            first.get("/api/v1/programs/")
        # when
        response = second.get("/api/v1/programs/")
    # then
    assert response.status_code == 200


def test_exceptions_endpoint_shows_only_own_organization(org, other_org, program, partner):
    # given
    exception_raise(
        organization=org,
        kind="unmatched_event",
        title="Unmatched partner event",
        dedup_key="mine",
        program=program,
        actor=Actor.system("test"),
    )
    exception_raise(
        organization=other_org,
        kind="unmatched_event",
        title="Theirs",
        dedup_key="theirs",
        actor=Actor.system("test"),
    )
    # when
    response = partner.get("/api/v1/exceptions/")
    # then
    titles = [item["title"] for item in response.json()["results"]]
    assert titles == ["Unmatched partner event"]
    assert response.json()["results"][0]["program"] == "dpp"
