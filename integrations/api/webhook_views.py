"""/api/v1/webhook-endpoints/: partners manage their own webhook endpoints.

Reads need any key of the organization; writes need a read-write key that
is organization-wide (a program-scoped key would otherwise subscribe to
other programs' events), else 403. Another organization's endpoint is 404.
Secrets appear only in the create and rotate-secret responses.
"""

from __future__ import annotations

from datetime import timedelta

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from integrations.api.base import PartnerAPIView
from integrations.api.pagination import PartnerCursorPagination
from integrations.api.webhook_serializers import (
    RotateSecretSerializer,
    SecretSerializer,
    TestEventSerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointOutputSerializer,
    WebhookEndpointUpdateSerializer,
)
from integrations.dispatch import webhook_id_for
from integrations.models import WebhookEndpoint
from integrations.phi import phi_scan
from integrations.problems import PhiDetected, Unprocessable, flatten_errors
from integrations.services.webhooks import (
    WebhookEndpointInvalid,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_endpoint_update,
)

TAGS = ["webhook-endpoints"]


def _validated(serializer_class, request, **kwargs):
    serializer = serializer_class(data=request.data, **kwargs)
    if not serializer.is_valid():
        raise Unprocessable(
            "The request body is not valid.", errors=flatten_errors(serializer.errors)
        )
    return serializer.validated_data


def _service_errors(exc: WebhookEndpointInvalid):
    return Unprocessable(
        "The webhook endpoint was refused.",
        errors=[
            {"path": f"$.{field}".replace(".[", "["), "message": message, "code": "invalid"}
            for field, message in exc.errors
        ],
    )


class WebhookEndpointMixin:
    # The endpoint's own URL is partner configuration, not participant data:
    # the PHI guard skips it (and only it); everything else is still scanned.
    PHI_EXEMPT_PATHS = frozenset({"$.url"})

    def phi_guard(self, request) -> None:
        data = request.data
        if not data:
            return
        findings = phi_scan(data, allow=self.PHI_EXEMPT_PATHS)
        if findings:
            raise PhiDetected(errors=[f.as_error() for f in findings])

    def endpoints(self, request):
        return WebhookEndpoint.objects.filter(organization_id=request.auth.organization_id)

    def get_endpoint(self, request, endpoint_id):
        endpoint = self.endpoints(request).filter(pk=endpoint_id).first()
        if endpoint is None:
            raise exceptions.NotFound("No such webhook endpoint.")
        return endpoint

    def require_org_wide_writer(self, request):
        if request.auth.scope_ids:
            raise exceptions.PermissionDenied(
                "Webhook endpoints receive every program's events: use an "
                "organization-wide key (not limited to programs)."
            )


class WebhookEndpointListView(WebhookEndpointMixin, PartnerAPIView):
    pagination_class = PartnerCursorPagination

    @property
    def paginator(self):
        if not hasattr(self, "_paginator"):
            self._paginator = self.pagination_class()
        return self._paginator

    @extend_schema(
        operation_id="webhook_endpoints_list",
        responses=WebhookEndpointOutputSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request):
        page = self.paginator.paginate_queryset(self.endpoints(request), request, view=self)
        return self.paginator.get_paginated_response(
            WebhookEndpointOutputSerializer(page, many=True).data
        )

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        tags=TAGS,
    )
    def post(self, request):
        self.require_org_wide_writer(request)
        data = _validated(WebhookEndpointCreateSerializer, request)
        try:
            endpoint, secret = webhook_endpoint_create(
                organization=request.auth.organization_id,
                actor=request.auth.actor,
                **data,
            )
        except WebhookEndpointInvalid as exc:
            raise _service_errors(exc) from None
        endpoint.secret = secret
        return Response(WebhookEndpointCreatedSerializer(endpoint).data, status=201)


class WebhookEndpointDetailView(WebhookEndpointMixin, PartnerAPIView):
    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        responses=WebhookEndpointOutputSerializer,
        tags=TAGS,
    )
    def get(self, request, endpoint_id: int):
        return Response(
            WebhookEndpointOutputSerializer(self.get_endpoint(request, endpoint_id)).data
        )

    @extend_schema(
        operation_id="webhook_endpoints_update",
        request=WebhookEndpointUpdateSerializer,
        responses=WebhookEndpointOutputSerializer,
        tags=TAGS,
    )
    def patch(self, request, endpoint_id: int):
        self.require_org_wide_writer(request)
        endpoint = self.get_endpoint(request, endpoint_id)
        data = _validated(WebhookEndpointUpdateSerializer, request, partial=True)
        if data:
            try:
                endpoint = webhook_endpoint_update(
                    endpoint_id=endpoint.pk, actor=request.auth.actor, **data
                )
            except WebhookEndpointInvalid as exc:
                raise _service_errors(exc) from None
        return Response(WebhookEndpointOutputSerializer(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_destroy", responses={204: None}, tags=TAGS)
    def delete(self, request, endpoint_id: int):
        self.require_org_wide_writer(request)
        endpoint = self.get_endpoint(request, endpoint_id)
        webhook_endpoint_delete(endpoint_id=endpoint.pk, actor=request.auth.actor)
        return Response(status=204)


class WebhookEndpointTestView(WebhookEndpointMixin, PartnerAPIView):
    @extend_schema(
        operation_id="webhook_endpoints_send_test",
        request=None,
        responses={202: TestEventSerializer},
        tags=TAGS,
    )
    def post(self, request, endpoint_id: int):
        self.require_org_wide_writer(request)
        endpoint = self.get_endpoint(request, endpoint_id)
        event_id = webhook_endpoint_send_test(endpoint_id=endpoint.pk, actor=request.auth.actor)
        return Response({"event_id": event_id, "webhook_id": webhook_id_for(event_id)}, status=202)


class WebhookEndpointRotateView(WebhookEndpointMixin, PartnerAPIView):
    @extend_schema(
        operation_id="webhook_endpoints_rotate_secret",
        request=RotateSecretSerializer,
        responses=SecretSerializer,
        tags=TAGS,
    )
    def post(self, request, endpoint_id: int):
        self.require_org_wide_writer(request)
        endpoint = self.get_endpoint(request, endpoint_id)
        data = _validated(RotateSecretSerializer, request)
        secret = webhook_endpoint_rotate_secret(
            endpoint_id=endpoint.pk,
            actor=request.auth.actor,
            overlap=timedelta(hours=data["overlap_hours"]),
        )
        endpoint.refresh_from_db()
        return Response(
            {
                "secret": secret,
                "previous_secret_valid_until": serializers.DateTimeField().to_representation(
                    endpoint.previous_secret_expires_at
                ),
            }
        )


urlpatterns = [
    path("webhook-endpoints/", WebhookEndpointListView.as_view(), name="api-webhook-endpoints"),
    path(
        "webhook-endpoints/<int:endpoint_id>/",
        WebhookEndpointDetailView.as_view(),
        name="api-webhook-endpoint",
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/test/",
        WebhookEndpointTestView.as_view(),
        name="api-webhook-endpoint-test",
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/rotate-secret/",
        WebhookEndpointRotateView.as_view(),
        name="api-webhook-endpoint-rotate",
    ),
]
