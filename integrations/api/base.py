"""The base of every partner API view: auth, body cap, PHI guard, idempotency.

Order of a request: 413 on an oversized Content-Length (before anything
else), authentication (401), permission (403 for a read-only key on POST),
throttle (429), then for bodies the PHI guard (422, nothing stored) and for
POST the Idempotency-Key claim. The claim, the view and the storing of its
response run in one transaction (one commit), so a replay never sees a
response whose writes rolled back, and a crash leaves no claim behind.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from integrations import idempotency
from integrations.auth import ApiKeyAuthentication, IsApiClient
from integrations.phi import phi_allowed_paths, phi_scan
from integrations.problems import PayloadTooLarge, PhiDetected, body_too_large
from integrations.throttling import ApiClientRateThrottle


class PartnerAPIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsApiClient]
    throttle_classes = [ApiClientRateThrottle]

    def phi_program_ids(self, request) -> list[int]:
        """Programs whose PHI allowlist applies to this request's body.

        Default: the programs the key may act on (its scopes, or every
        program of its organization). Views that name one program narrow it.
        """
        from programs.models import Program

        client = request.auth
        if client.scope_ids:
            return list(client.scope_ids)
        return list(
            Program.objects.filter(organization_id=client.organization_id).values_list(
                "pk", flat=True
            )
        )

    def phi_guard(self, request) -> None:
        data = request.data
        if not data:
            return
        findings = phi_scan(data)
        if findings:
            allow = phi_allowed_paths(program_ids=self.phi_program_ids(request))
            if allow:
                findings = phi_scan(data, allow=allow)
        if findings:
            raise PhiDetected(errors=[f.as_error() for f in findings])

    def initial(self, request, *args, **kwargs):
        if body_too_large(request):
            raise PayloadTooLarge()
        super().initial(request, *args, **kwargs)
        if request.method in ("POST", "PUT", "PATCH"):
            self.phi_guard(request)

    def dispatch(self, request, *args, **kwargs):
        """DRF's dispatch, with the Idempotency-Key handling around the handler."""
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            handler = getattr(self, request.method.lower(), None)
            if request.method.lower() not in self.http_method_names or handler is None:
                handler = self.http_method_not_allowed
            key = idempotency.read_key(request) if request.method == "POST" else None
            if key is not None and handler is not self.http_method_not_allowed:
                self.response = self._idempotent(request, handler, key, *args, **kwargs)
                return self.response
            response = handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def _idempotent(self, request, handler, key, *args, **kwargs):
        """Claim the key, run the handler and store its response in ONE
        transaction (one commit; a concurrent request with the same key gets
        409 while this one runs, and a replay after it). If the handler
        raises, its writes roll back and the error response is stored in a
        second, short transaction. 5xx and 429 are never stored (and roll
        back)."""

        def begin():
            return idempotency.idempotency_begin(
                client=request.auth,
                key=key,
                method=request.method,
                path=request.path,
                data=request.data,
            )

        error = None
        with transaction.atomic():
            outcome = begin()
            if isinstance(outcome, idempotency.Replay):
                return _replay_response(outcome)
            try:
                response = handler(request, *args, **kwargs)
            except Exception as exc:
                error = exc
                transaction.set_rollback(True)
            else:
                response = self.finalize_response(request, response, *args, **kwargs)
                response.render()
                if response.status_code in idempotency.NOT_STORED:
                    transaction.set_rollback(True)
                else:
                    idempotency.idempotency_finish(
                        outcome,
                        status_code=response.status_code,
                        body=response.content,
                        content_type=response.get("Content-Type", ""),
                    )
                return response
        response = self.handle_exception(error)  # re-raises what is not an API error
        response = self.finalize_response(request, response, *args, **kwargs)
        response.render()
        if response.status_code not in idempotency.NOT_STORED:
            with transaction.atomic():
                outcome = begin()
                if isinstance(outcome, idempotency.Replay):  # another request got there first
                    return _replay_response(outcome)
                idempotency.idempotency_finish(
                    outcome,
                    status_code=response.status_code,
                    body=response.content,
                    content_type=response.get("Content-Type", ""),
                )
        return response


def _replay_response(outcome) -> HttpResponse:
    response = HttpResponse(
        outcome.body,
        status=outcome.status_code,
        content_type=outcome.content_type or "application/json",
    )
    response["Idempotent-Replayed"] = "true"
    return response


def render_json(data) -> bytes:
    return JSONRenderer().render(data)
