"""Partner endpoints of the participants app: referrals, enrollments, transitions, events.

One view per operation; each validates with its input serializer and calls
one service (participants.services). Every row is looked up within the key's
organization and program scopes, so another organization's ids are 404.
"""

from __future__ import annotations

import re

from django.db import DatabaseError, transaction
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from integrations.api.base import PartnerAPIView
from integrations.api.pagination import EnrollmentCursorPagination
from integrations.api.views import validated_query
from integrations.payloads import PayloadValueError
from integrations.phi import phi_scan
from integrations.problems import ConflictProblem, Problem, Unprocessable, flatten_errors
from participants.api.serializers import (
    EnrollmentDetailOutputSerializer,
    EnrollmentFilterSerializer,
    EnrollmentOutputSerializer,
    EventBatchInputSerializer,
    EventBatchOutputSerializer,
    EventInputSerializer,
    EventOutputSerializer,
    ReferralInputSerializer,
    TransitionInputSerializer,
    event_input_fast,
    event_output,
)
from participants.errors import EnrollmentNotOpen
from participants.models import Enrollment, StepInstance
from participants.services import (
    enrollment_allowed_transitions,
    enrollment_open,
    enrollment_transition,
    event_ingest,
    participant_upsert,
)
from participants.services.events import EventItem, events_ingest_many
from programs.errors import TransitionNotAllowed
from programs.models import Program

_FIELD_MESSAGE = re.compile(r"^([a-z_]+): (.*)$", re.S)


def value_error_problem(exc: ValueError, path_prefix: str = "$") -> Unprocessable:
    """A service's ValueError ('field: message', or a PayloadValueError with
    its own path) -> 422 naming the field path."""
    text = str(exc)
    if isinstance(exc, PayloadValueError):
        path, message = path_prefix + exc.path[1:], exc.message
    elif match := _FIELD_MESSAGE.match(text):
        path, message = f"{path_prefix}.{match[1]}", match[2]
    else:
        path, message = path_prefix, text
    return Unprocessable(
        "The request is not valid.", errors=[{"path": path, "message": message, "code": "invalid"}]
    )


def validated_body(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def enrollments_for(client):
    queryset = Enrollment.objects.filter(organization_id=client.organization_id)
    if client.scope_ids:
        queryset = queryset.filter(program_id__in=client.scope_ids)
    return queryset.select_related("participant", "program", "program_version")


def enrollment_detail(client, enrollment_id) -> Enrollment:
    enrollment = (
        enrollments_for(client)
        .prefetch_related(
            Prefetch("steps", queryset=StepInstance.objects.order_by("created_at", "id"))
        )
        .filter(pk=enrollment_id)
        .first()
    )
    if enrollment is None:
        raise NotFound("No enrollment with this id is visible to this key.")
    return enrollment


def detail_data(client, enrollment) -> dict:
    allowed = (
        enrollment_allowed_transitions(enrollment, actor=client.actor) if client.can_write else []
    )
    return EnrollmentDetailOutputSerializer(
        enrollment, context={"allowed_transitions": allowed}
    ).data


class ReferralCreateView(PartnerAPIView):
    """Register a referral: upsert the participant by `external_ref` and open an
    enrollment in `referred` (201), or return the open one (200)."""

    def phi_program_ids(self, request):
        program = self._program(request, quiet=True)
        return [program.pk] if program else super().phi_program_ids(request)

    def _program(self, request, quiet=False):
        slug = request.data.get("program") if isinstance(request.data, dict) else None
        client = request.auth
        program = None
        if isinstance(slug, str):
            program = Program.objects.filter(
                organization_id=client.organization_id, slug=slug
            ).first()
        if program is not None and client.scope_ids and program.pk not in client.scope_ids:
            program = None
        if program is None and not quiet:
            raise Problem(
                "No program with this slug is visible to this key.",
                status_code=404,
                problem_type="not-found",
                errors=[{"path": "$.program", "message": "unknown program", "code": "not_found"}],
            )
        return program

    @extend_schema(
        operation_id="referrals_create",
        request=ReferralInputSerializer,
        responses={
            201: EnrollmentDetailOutputSerializer,
            200: EnrollmentDetailOutputSerializer,
        },
        tags=["referrals"],
    )
    def post(self, request):
        data = validated_body(ReferralInputSerializer, request)
        client = request.auth
        program = self._program(request)
        try:
            with transaction.atomic():
                participant, _ = participant_upsert(
                    organization=client.organization,
                    external_ref=data["external_ref"],
                    actor=client.actor,
                    source_system=data.get("source_system", ""),
                    timezone=data.get("timezone") or None,
                    locale=data.get("locale", ""),
                    tags=data.get("tags"),
                )
                enrollment, created = enrollment_open(
                    participant=participant, program=program, actor=client.actor
                )
        except EnrollmentNotOpen as exc:
            raise ConflictProblem(str(exc), problem_type="program-not-accepting") from exc
        except ValueError as exc:
            raise value_error_problem(exc) from exc
        enrollment = enrollment_detail(client, enrollment.pk)
        return Response(
            detail_data(client, enrollment),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class EnrollmentListView(PartnerAPIView):
    """Enrollments of this key's programs, oldest change first (cursor pagination)."""

    pagination_class = EnrollmentCursorPagination

    @extend_schema(
        operation_id="enrollments_list",
        parameters=[EnrollmentFilterSerializer],
        responses=EnrollmentOutputSerializer(many=True),
        tags=["enrollments"],
    )
    def get(self, request):
        filters = validated_query(EnrollmentFilterSerializer, request)
        queryset = enrollments_for(request.auth)
        if "program" in filters:
            queryset = queryset.filter(program__slug=filters["program"])
        if "state" in filters:
            queryset = queryset.filter(state=filters["state"])
        if "external_ref" in filters:
            queryset = queryset.filter(participant__external_ref=filters["external_ref"])
        if "updated_after" in filters:
            queryset = queryset.filter(updated_at__gt=filters["updated_after"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(EnrollmentOutputSerializer(page, many=True).data)


class EnrollmentDetailView(PartnerAPIView):
    """One enrollment: state, steps with due and completed times, allowed transitions."""

    @extend_schema(
        operation_id="enrollments_retrieve",
        responses=EnrollmentDetailOutputSerializer,
        tags=["enrollments"],
    )
    def get(self, request, enrollment_id: int):
        client = request.auth
        return Response(detail_data(client, enrollment_detail(client, enrollment_id)))


class EnrollmentTransitionView(PartnerAPIView):
    """Run one transition; 409 names the current state and the allowed ones."""

    @extend_schema(
        operation_id="enrollments_transition",
        request=TransitionInputSerializer,
        responses={200: EnrollmentDetailOutputSerializer},
        tags=["enrollments"],
    )
    def post(self, request, enrollment_id: int):
        client = request.auth
        enrollment_detail(client, enrollment_id)  # 404 outside the key's scope
        data = validated_body(TransitionInputSerializer, request)
        try:
            enrollment_transition(
                enrollment_id=enrollment_id,
                transition=data["transition"],
                actor=client.actor,
                reason=data.get("reason", ""),
            )
        except TransitionNotAllowed as exc:
            current = enrollment_detail(client, enrollment_id)
            allowed = enrollment_allowed_transitions(current, actor=client.actor)
            raise ConflictProblem(
                str(exc),
                problem_type="transition-not-allowed",
                current_state=current.state,
                allowed_transitions=allowed,
            ) from exc
        except ValueError as exc:
            raise value_error_problem(exc) from exc
        return Response(detail_data(client, enrollment_detail(client, enrollment_id)))


def event_values(data) -> dict:
    """The validated fields of one event, or raise ValidationError (422)."""
    values = event_input_fast(data)
    if values is None:
        serializer = EventInputSerializer(data=data)
        if not serializer.is_valid():
            raise ValidationError(serializer.errors)
        values = serializer.validated_data
    return values


def scope_of(client):
    """The programs a scoped key may affect, or None (every program of its org)."""
    return client.scope_ids or None


def ingest_one(client, data) -> tuple[int, dict]:
    """Validate and ingest one event; return (status, body). Never raises on input."""
    values = event_values(data)
    try:
        result = event_ingest(
            organization=client.organization_id,
            event_id=values["id"],
            event_type=values["type"],
            external_ref=values["external_ref"],
            occurred_at=values["occurred_at"],
            data=values.get("data") or {},
            actor=client.actor,
            source=client.name,
            program_ids=scope_of(client),
        )
    except ValueError as exc:
        raise value_error_problem(exc) from exc
    return 202, event_output(result.event)


class EventCreateView(PartnerAPIView):
    """Accept one partner event (202). Idempotent on `id` per organization."""

    @extend_schema(
        operation_id="events_create",
        request=EventInputSerializer,
        responses={202: EventOutputSerializer},
        tags=["events"],
    )
    def post(self, request):
        status_code, body = ingest_one(request.auth, request.data)
        return Response(body, status=status_code)


def batch_events(request) -> list[dict]:
    """The `events` list of a batch body: checked here when plainly valid
    (a list of 1-500 objects: what EventBatchInputSerializer accepts, whose
    DictField returns each object unchanged), else by the serializer, which
    explains the error."""
    data = request.data
    events = data.get("events") if isinstance(data, dict) else None
    if (
        isinstance(events, list)
        and 1 <= len(events) <= 500
        and all(isinstance(item, dict) for item in events)
    ):
        return events
    return validated_body(EventBatchInputSerializer, request)["events"]


def _item_id(item):
    """The item's event id as it is stored (EventInputSerializer's CharField
    takes a number as its text), or None."""
    event_id = item.get("id") if isinstance(item, dict) else None
    if isinstance(event_id, bool) or not isinstance(event_id, str | int | float):
        return None
    return str(event_id)


def _item_problem(exc: Problem, index: int, item_id, path: str) -> dict:
    errors = [
        {**e, "path": path + e["path"][1:] if e["path"].startswith("$") else e["path"]}
        for e in exc.errors
    ]
    return {"index": index, "id": item_id, "status": exc.status_code, "errors": errors}


def _item_conflict(index: int, item_id, path: str) -> dict:
    return {
        "index": index,
        "id": item_id,
        "status": 409,
        "errors": [{"path": path, "message": "conflict; retry this item", "code": "retry"}],
    }


class EventBatchView(PartnerAPIView):
    """Accept up to 500 events; each item gets its own result, and one bad item
    never fails the others: invalid or PHI-carrying items are answered 422
    before anything is stored, the valid ones are ingested together
    (`events_ingest_many`, set-based, in one transaction). If that fails on
    the database (a concurrent request storing the same event id), the valid
    items are retried one by one, each in its own savepoint."""

    def phi_guard(self, request):
        # Findings inside one item reject that item only (see post); anything
        # outside `events[...]` rejects the request.
        data = request.data
        if not isinstance(data, dict):
            return
        outside = {k: v for k, v in data.items() if k != "events"}
        if outside:
            findings = phi_scan(outside)
            if findings:
                from integrations.problems import PhiDetected

                raise PhiDetected(errors=[f.as_error() for f in findings])

    @extend_schema(
        operation_id="events_batch",
        request=EventBatchInputSerializer,
        responses={200: EventBatchOutputSerializer},
        tags=["events"],
    )
    def post(self, request):
        client = request.auth
        items = batch_events(request)
        allow = None
        results: list[dict | None] = [None] * len(items)
        accepted: list[tuple[int, EventItem]] = []  # (index, item) that passed the checks
        for index, item in enumerate(items):
            path = f"$.events[{index}]"
            item_id = _item_id(item)
            findings = phi_scan(item)
            if findings:
                if allow is None:
                    from integrations.phi import phi_allowed_paths

                    allow = phi_allowed_paths(program_ids=self.phi_program_ids(request))
                findings = phi_scan(item, allow=allow) if allow else findings
            if findings:
                errors = [f.as_error() for f in findings]
                for error in errors:
                    error["path"] = path + error["path"][1:]
                results[index] = {"index": index, "id": item_id, "status": 422, "errors": errors}
                continue
            try:
                values = event_values(item)
            except ValidationError as exc:
                errors = flatten_errors(exc.detail, path)
                results[index] = {"index": index, "id": item_id, "status": 422, "errors": errors}
                continue
            accepted.append(
                (
                    index,
                    EventItem(
                        event_id=values["id"],
                        event_type=values["type"],
                        external_ref=values["external_ref"],
                        occurred_at=values["occurred_at"],
                        data=values.get("data") or {},
                    ),
                )
            )
        if accepted:
            try:
                outcomes = events_ingest_many(
                    organization=client.organization_id,
                    items=[item for _, item in accepted],
                    actor=client.actor,
                    source=client.name,
                    program_ids=scope_of(client),
                )
            except DatabaseError:
                outcomes = None
            if outcomes is None:
                self._one_by_one(client, items, accepted, results)
            else:
                for (index, _item), outcome in zip(accepted, outcomes, strict=True):
                    path = f"$.events[{index}]"
                    item_id = _item_id(items[index])
                    if isinstance(outcome, ValueError):
                        results[index] = _item_problem(
                            value_error_problem(outcome), index, item_id, path
                        )
                    else:
                        results[index] = {
                            "index": index,
                            "id": item_id,
                            "status": 202,
                            "event": event_output(outcome.event),
                        }
        n_accepted = sum(1 for r in results if r["status"] == 202)
        return Response(
            {"accepted": n_accepted, "rejected": len(results) - n_accepted, "results": results},
            status=status.HTTP_200_OK,
        )

    @staticmethod
    def _one_by_one(client, items, accepted, results) -> None:
        for index, _item in accepted:
            path = f"$.events[{index}]"
            item_id = _item_id(items[index])
            try:
                with transaction.atomic():
                    status_code, body = ingest_one(client, items[index])
                results[index] = {
                    "index": index,
                    "id": item_id,
                    "status": status_code,
                    "event": body,
                }
            except ValidationError as exc:
                errors = flatten_errors(exc.detail, path)
                results[index] = {"index": index, "id": item_id, "status": 422, "errors": errors}
            except Problem as exc:
                results[index] = _item_problem(exc, index, item_id, path)
            except DatabaseError:
                results[index] = _item_conflict(index, item_id, path)


__all__ = [
    "EnrollmentDetailView",
    "EnrollmentListView",
    "EnrollmentTransitionView",
    "EventBatchView",
    "EventCreateView",
    "ReferralCreateView",
]
