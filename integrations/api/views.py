"""Read-only partner endpoints of the integrations app: programs and exceptions."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from integrations.api.base import PartnerAPIView
from integrations.api.pagination import PartnerCursorPagination
from integrations.api.serializers import (
    ExceptionFilterSerializer,
    ExceptionOutputSerializer,
    ProgramOutputSerializer,
)
from integrations.problems import Unprocessable, flatten_errors
from programs.models import ACTIVE_EXCEPTION_STATES, OpsException, Program, ProgramVersion


def validated_query(serializer_class, request):
    """Validate query parameters; unknown values -> 422 with `query:<name>` paths."""
    serializer = serializer_class(data=request.query_params.dict())
    if not serializer.is_valid():
        errors = flatten_errors(serializer.errors)
        for error in errors:
            error["path"] = error["path"].replace("$.", "query:", 1)
        raise Unprocessable("Invalid query parameters.", errors=errors)
    return serializer.validated_data


class ProgramListView(PartnerAPIView):
    """The programs this key can see (its scopes, or all of its organization's)."""

    @extend_schema(
        operation_id="programs_list",
        responses=ProgramOutputSerializer(many=True),
        tags=["programs"],
    )
    def get(self, request):
        client = request.auth
        programs = Program.objects.filter(organization_id=client.organization_id).prefetch_related(
            Prefetch(
                "versions",
                queryset=ProgramVersion.objects.filter(published_at__isnull=False).only(
                    "id", "number", "program_id"
                ),
                to_attr="published_versions",
            )
        )
        if client.scope_ids:
            programs = programs.filter(pk__in=client.scope_ids)
        programs = list(programs.order_by("slug"))
        for program in programs:
            program.published_numbers = [v.number for v in program.published_versions]
        return Response(ProgramOutputSerializer(programs, many=True).data)


class ExceptionListView(PartnerAPIView):
    """Exception-queue items of this key's programs, so partners see what is stuck."""

    pagination_class = PartnerCursorPagination

    @extend_schema(
        operation_id="exceptions_list",
        parameters=[ExceptionFilterSerializer],
        responses=ExceptionOutputSerializer(many=True),
        tags=["exceptions"],
    )
    def get(self, request):
        client = request.auth
        filters = validated_query(ExceptionFilterSerializer, request)
        items = OpsException.objects.filter(organization_id=client.organization_id).select_related(
            "program"
        )
        if client.scope_ids:
            items = items.filter(program_id__in=client.scope_ids)
        state = filters.get("state", "active")
        if state == "active":
            items = items.filter(state__in=ACTIVE_EXCEPTION_STATES)
        else:
            items = items.filter(state=state)
        if "program" in filters:
            items = items.filter(program__slug=filters["program"])
        if "kind" in filters:
            items = items.filter(kind=filters["kind"])
        if "severity" in filters:
            items = items.filter(severity=filters["severity"])
        paginator = self.paginator
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ExceptionOutputSerializer(page, many=True).data)

    @property
    def paginator(self):
        if not hasattr(self, "_paginator"):
            self._paginator = self.pagination_class()
        return self._paginator
