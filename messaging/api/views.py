"""Vendor callbacks: POST /api/v1/messaging/callbacks/{connector_id}/.

No API key: the request is authenticated by its Standard Webhooks signature
(the connector's secret). Errors are problem+json: 401 for a bad or stale
signature, 404 for an unknown connector or message, 422 for a body that does
not match the callback format (naming the field), never a 500.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.connectors import CallbackFormatError
from integrations.inbound import InboundVerificationError
from integrations.problems import PayloadTooLarge, Problem, body_too_large
from messaging.api.serializers import CallbackInputSerializer, CallbackOutputSerializer
from messaging.errors import ConnectorNotFound, MessageNotFound
from messaging.services import callback_receive

PROBLEM = OpenApiResponse(description="problem+json (RFC 9457)")


class VendorCallbackView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="messaging_callback",
        summary="Delivery report or opt-out from the customer's messaging tool",
        request=CallbackInputSerializer,
        responses={
            200: CallbackOutputSerializer,
            401: PROBLEM,
            404: PROBLEM,
            413: PROBLEM,
            422: PROBLEM,
        },
        auth=[],
        tags=["messaging"],
    )
    def post(self, request, connector_id: int):
        if body_too_large(request):
            raise PayloadTooLarge()
        body = request.body
        try:
            outcome = callback_receive(
                connector_id=connector_id, headers=request.headers, body=body
            )
        except ConnectorNotFound as exc:
            raise Problem(str(exc), status_code=404, problem_type="not-found") from None
        except MessageNotFound as exc:
            raise Problem(str(exc), status_code=404, problem_type="not-found") from None
        except InboundVerificationError as exc:
            if exc.code == "bad_body":
                raise Problem(exc.message, status_code=422, problem_type="malformed-body") from None
            raise Problem(
                exc.message, status_code=401, problem_type="bad-signature", code=exc.code
            ) from None
        except CallbackFormatError as exc:
            raise Problem(
                "The callback does not match the callback format.",
                status_code=422,
                problem_type="validation",
                errors=[{"path": _json_path(exc.path), "message": exc.message, "code": "invalid"}],
            ) from None
        data = {
            "status": outcome.status,
            "detail": outcome.detail,
            "message_id": outcome.message_id,
            "stripped": outcome.stripped,
        }
        return Response(CallbackOutputSerializer(data).data)


def _json_path(path: str) -> str:
    """A field name ('channel') or a JSON path ('$.x[0]') as a JSON path."""
    return path if path.startswith("$") else f"$.{path}"
