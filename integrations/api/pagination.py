"""Cursor pagination with a hard page-size cap (1-200, else 422)."""

from __future__ import annotations

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
