"""The framework ceiling: a DRF view with no auth, no checks, one INSERT.

Served under /api/ like the partner API, so both go through the same
middleware (the API fast path of integrations/api/middleware.py)."""

import json

from django.db import connection
from django.http import JsonResponse
from django.urls import path
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class BareInsert(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    parser_classes = [JSONParser]

    def post(self, request):
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_bare_row (body) VALUES (%s) RETURNING id",
                [json.dumps(request.data)],
            )
            (row_id,) = cursor.fetchone()
        return Response({"id": row_id}, status=201)


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("api/bare/", BareInsert.as_view()), path("healthz", healthz)]
