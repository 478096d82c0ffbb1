"""Idempotency-Key over HTTP on partner POSTs (R6, sequential part)."""

import pytest

from integrations.models import IdempotencyRecord
from integrations.tests.api_fixtures import PartnerHttp, make_key, problem
from participants.models import Enrollment, Participant

pytestmark = pytest.mark.django_db

REFERRAL = {"program": "dpp", "external_ref": "REF-1"}


def test_replay_returns_identical_status_and_body(partner, program):
    # when
    first = partner.post("/api/v1/referrals/", REFERRAL, idempotency_key="abc-1")
    again = partner.post("/api/v1/referrals/", REFERRAL, idempotency_key="abc-1")
    # then
    assert first.status_code == again.status_code == 201  # not 200: the first response
    assert first.content == again.content
    assert again["Idempotent-Replayed"] == "true"
    assert Enrollment.objects.count() == 1


def test_same_key_different_body_is_422(partner, program):
    partner.post("/api/v1/referrals/", REFERRAL, idempotency_key="abc-2")
    response = partner.post(
        "/api/v1/referrals/", {**REFERRAL, "external_ref": "REF-2"}, idempotency_key="abc-2"
    )
    assert response.status_code == 422
    assert problem(response)["type"].endswith("idempotency-key-reused")
    assert Participant.objects.count() == 1


def test_error_responses_are_replayed_too(partner, program):
    first = partner.post("/api/v1/referrals/", {"program": "dpp"}, idempotency_key="abc-3")
    again = partner.post("/api/v1/referrals/", {"program": "dpp"}, idempotency_key="abc-3")
    assert first.status_code == again.status_code == 422
    assert first.content == again.content


def test_phi_rejection_stores_no_idempotency_record(partner, program):
    response = partner.post(
        "/api/v1/referrals/", {**REFERRAL, "email": "a@b.io"}, idempotency_key="abc-4"
    )
    assert response.status_code == 422
    assert IdempotencyRecord.objects.count() == 0


def test_another_client_may_use_the_same_key(org, program, partner):
    partner.post("/api/v1/referrals/", REFERRAL, idempotency_key="shared")
    other = PartnerHttp(make_key(org, name="second")[1])
    response = other.post(
        "/api/v1/referrals/", {**REFERRAL, "external_ref": "REF-9"}, idempotency_key="shared"
    )
    assert response.status_code == 201
    assert response.json()["external_ref"] == "REF-9"


def test_invalid_key_is_422(partner, program):
    response = partner.post("/api/v1/referrals/", REFERRAL, idempotency_key="has space")
    assert response.status_code == 422
