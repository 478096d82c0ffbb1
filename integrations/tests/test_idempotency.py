"""Idempotency-Key records: claim, replay, mismatch, in flight, per client, 24 h purge."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import idempotency
from integrations.models import IdempotencyRecord
from integrations.problems import ConflictProblem, Unprocessable
from integrations.tests.api_fixtures import make_key

pytestmark = pytest.mark.django_db


def _begin(client, key="k-1", data=None, path="/api/v1/events/"):
    return idempotency.idempotency_begin(
        client=client, key=key, method="POST", path=path, data=data or {"a": 1}
    )


def test_first_claims_then_same_body_replays_the_stored_bytes(org):
    # given
    client, _ = make_key(org)
    claim = _begin(client)
    idempotency.idempotency_finish(
        claim, status_code=201, body=b'{"id":1}', content_type="application/json"
    )
    # when
    replay = _begin(client, data={"a": 1})
    # then
    assert isinstance(replay, idempotency.Replay)
    assert (replay.status_code, replay.body) == (201, b'{"id":1}')


def test_key_order_in_the_body_does_not_matter(org):
    client, _ = make_key(org)
    claim = _begin(client, data={"a": 1, "b": 2})
    idempotency.idempotency_finish(claim, status_code=200, body=b"{}", content_type="x")
    assert isinstance(_begin(client, data={"b": 2, "a": 1}), idempotency.Replay)


def test_same_key_other_body_or_path_is_422(org):
    client, _ = make_key(org)
    claim = _begin(client)
    idempotency.idempotency_finish(claim, status_code=200, body=b"{}", content_type="x")
    with pytest.raises(Unprocessable):
        _begin(client, data={"a": 2})
    with pytest.raises(Unprocessable):
        _begin(client, path="/api/v1/referrals/")


def test_same_key_while_in_flight_is_409(org):
    client, _ = make_key(org)
    _begin(client)
    with pytest.raises(ConflictProblem):
        _begin(client)


def test_keys_are_never_shared_between_clients(org, other_org):
    # given
    first, _ = make_key(org)
    second, _ = make_key(other_org)
    claim = _begin(first)
    idempotency.idempotency_finish(claim, status_code=200, body=b"first", content_type="x")
    # when
    outcome = _begin(second)
    # then
    assert isinstance(outcome, idempotency.Claim)


def test_server_errors_and_429_are_not_stored(org):
    client, _ = make_key(org)
    claim = _begin(client)
    idempotency.idempotency_finish(claim, status_code=503, body=b"", content_type="x")
    assert isinstance(_begin(client), idempotency.Claim)


def test_abandoned_claim_is_taken_over(org):
    client, _ = make_key(org)
    _begin(client)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert isinstance(_begin(client), idempotency.Claim)


def test_records_are_kept_24h_then_purged(org):
    # given
    client, _ = make_key(org)
    for key, age in (("fresh", timedelta(hours=23)), ("old", timedelta(hours=25))):
        claim = _begin(client, key=key)
        idempotency.idempotency_finish(claim, status_code=200, body=b"{}", content_type="x")
        IdempotencyRecord.objects.filter(key=key).update(created_at=timezone.now() - age)
    # when
    result = idempotency.purge_expired_keys()
    # then
    assert result == {"purged": 1}
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_purge_is_a_registered_schedule():
    from programs.registries import registry

    job = registry.schedules["integrations.purge_idempotency_keys"]
    assert job.func == "integrations.idempotency.purge_expired_keys"


# --- the claim, the view and the stored response share one transaction ---------------


def _view_that_writes_then(outcome):
    """A partner view that writes an audit row, then returns or raises `outcome`."""
    from rest_framework.response import Response

    from integrations.api.base import PartnerAPIView
    from integrations.problems import ConflictProblem
    from programs.actors import Actor
    from programs.services import audit_record

    class WritesThen(PartnerAPIView):
        def post(self, request):
            audit_record(actor=Actor.system("test"), action="test.written")
            if outcome == "raise":
                raise ConflictProblem("no", problem_type="test-conflict")
            if outcome == "crash":
                raise RuntimeError("boom")
            return Response({"ok": True}, status=201)

    return WritesThen.as_view()


def _post(view, raw_key, key="k-view", body=None):
    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().post(
        "/api/v1/test/",
        body or {"a": 1},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    response = view(request)
    if hasattr(response, "render"):
        response.render()
    return response


def _written():
    from programs.models import AuditEvent

    return AuditEvent.objects.filter(action="test.written").count()


def test_success_commits_the_writes_and_stores_the_response_together(org):
    # given
    _client, raw = make_key(org)
    view = _view_that_writes_then("return")
    # when
    first = _post(view, raw)
    again = _post(view, raw)
    # then the handler ran once; the replay has the same bytes
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert _written() == 1
    record = IdempotencyRecord.objects.get(key="k-view")
    assert record.status_code == 201 and record.completed_at is not None


def test_an_error_raised_by_the_view_rolls_its_writes_back_and_is_stored(org):
    # given
    _client, raw = make_key(org)
    view = _view_that_writes_then("raise")
    # when
    first = _post(view, raw)
    again = _post(view, raw)
    # then the 409 is kept for replays, and the write before it is gone
    assert first.status_code == again.status_code == 409
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert _written() == 0


def test_a_crash_stores_nothing_so_a_retry_runs_again(org):
    # given
    _client, raw = make_key(org)
    # when
    with pytest.raises(RuntimeError):
        _post(_view_that_writes_then("crash"), raw)
    # then no claim is left behind and the retry runs
    assert not IdempotencyRecord.objects.filter(key="k-view").exists()
    assert _post(_view_that_writes_then("return"), raw).status_code == 201
