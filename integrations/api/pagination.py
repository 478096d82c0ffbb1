"""Cursor pagination with a hard page-size cap (1-200, else 422) and cursors
checked before they reach a query (a bad one is 422 at `query:cursor`)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from integrations.problems import Unprocessable

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


class PartnerCursorPagination(CursorPagination):
    page_size = DEFAULT_PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"
    ordering = ("id",)

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise Unprocessable(
                f"page_size must be an integer from 1 to {self.max_page_size}.",
                errors=[
                    {
                        "path": "query:page_size",
                        "message": f"must be 1-{self.max_page_size}",
                        "code": "invalid",
                    }
                ],
            )
        return size

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF's decoding, then the position read as the ordering field reads
        it: a cursor is opaque to partners but arrives as text anyone can
        edit, and a position that is no id or no timestamp failed inside the
        query (a 500). DRF's own "Invalid cursor" is a 404, which the guide
        reserves for objects; both are a 422 naming the parameter here."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise _invalid_cursor() from None
        if cursor is not None and cursor.position is not None:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                if "\x00" in cursor.position:
                    raise ValidationError("NUL")
                field.to_python(cursor.position)
            except (ValidationError, ValueError, TypeError, OverflowError):
                raise _invalid_cursor() from None
        return cursor

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_size_query_param:
                param["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                    "default": self.page_size,
                }
        return params


class EnrollmentCursorPagination(PartnerCursorPagination):
    ordering = ("updated_at", "id")


def _invalid_cursor() -> Unprocessable:
    return Unprocessable(
        "cursor is not one this API returned; follow `next` and `previous` as they are.",
        errors=[{"path": "query:cursor", "message": "invalid cursor", "code": "invalid"}],
    )
