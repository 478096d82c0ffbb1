"""RFC 9457 problem details for everything under /api/.

Every error a partner can see is `application/problem+json`:

    {"type": "https://baton.example/problems/validation", "title": "...",
     "status": 422, "detail": "...", "instance": "/api/v1/referrals/",
     "request_id": "...", "errors": [{"path": "$.tags[0]", "message": "...",
     "code": "..."}]}

DRF exceptions go through `problem_exception_handler`; Django's 404/500 for
/api/ paths through `api_handler404` / `api_handler500`. Validation errors
are 422 with one entry per field path; the body is never echoed.
"""

from __future__ import annotations

import json
import logging
import math
import re

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from config.request_id import get_request_id
from programs import errors as domain
from programs.jsonlimits import MAX_JSON_DEPTH, json_deeper_than

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://baton.dev/problems/"
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB

# The problem `type` (after PROBLEM_BASE) of an error known only by its status.
PROBLEM_TYPES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    411: "length-required",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "throttled",
}

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    411: "Length required",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
}


def problem_body(
    status_code: int,
    *,
    problem_type: str,
    detail: str = "",
    instance: str = "",
    errors: list | None = None,
    **extra,
) -> dict:
    body = {
        "type": PROBLEM_BASE + problem_type,
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body["request_id"] = get_request_id()
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(status_code: int, *, request=None, headers=None, **kwargs) -> Response:
    instance = request.path if request is not None else ""
    return Response(
        problem_body(status_code, instance=instance, **kwargs),
        status=status_code,
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


# --- API exceptions of our own ---------------------------------------------------------


class Problem(exceptions.APIException):
    """An APIException that carries a problem type and optional field errors."""

    status_code = 400
    problem_type = "bad-request"
    default_detail = "Bad request."

    def __init__(self, detail=None, *, errors=None, status_code=None, problem_type=None, **extra):
        super().__init__(detail or self.default_detail)
        if status_code:
            self.status_code = status_code
        if problem_type:
            self.problem_type = problem_type
        self.errors = errors or []
        self.extra = extra


class PayloadTooLarge(Problem):
    status_code = 413
    problem_type = "payload-too-large"
    default_detail = f"The request body is larger than {MAX_BODY_BYTES} bytes (1 MiB)."


class PhiDetected(Problem):
    status_code = 422
    problem_type = "phi-detected"
    default_detail = (
        "The payload appears to carry protected health information. Baton accepts only "
        "opaque references and operational state; nothing was stored."
    )


class Unprocessable(Problem):
    status_code = 422
    problem_type = "validation"
    default_detail = "The request is not valid."


class ConflictProblem(Problem):
    status_code = 409
    problem_type = "conflict"
    default_detail = "The request conflicts with the current state."


# --- error paths ----------------------------------------------------------------------


def join_path(path: str, key) -> str:
    """`path` extended by a key or index, as error paths are written."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = str(key)
    if key == "non_field_errors":
        return path
    if key.isidentifier():
        return f"{path}.{key}"
    return path + quoted_key(key)


# A quote or backslash is escaped so the path reads back; a control
# character or a lone surrogate is written as its \uXXXX escape, so a path is
# always printable text (DRF renders UTF-8, which a surrogate cannot be: a
# 500 while answering 422).
_NEEDS_ESCAPE = re.compile("[\\\\'\x00-\x1f\x7f\ud800-\udfff]")


def _escape(match) -> str:
    char = match.group()
    return "\\" + char if char in "\\'" else f"\\u{ord(char):04x}"


def quoted_key(key: str) -> str:
    """A non-identifier key as a path step: `['a b']`, `['it\\'s']`, `['k\\u0000']`."""
    return f"['{_NEEDS_ESCAPE.sub(_escape, key)}']"


def flatten_errors(detail, path: str = "$") -> list[dict]:
    """DRF's nested error detail -> [{"path": "$.data.x", "message", "code"}]."""
    out: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            out.extend(flatten_errors(value, join_path(path, key)))
    elif isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            for item in detail:
                out.append(
                    {"path": path, "message": str(item), "code": getattr(item, "code", "invalid")}
                )
        else:
            for index, item in enumerate(detail):
                if item in ({}, [], None):
                    continue
                out.extend(flatten_errors(item, join_path(path, index)))
    else:
        out.append(
            {"path": path, "message": str(detail), "code": getattr(detail, "code", "invalid")}
        )
    return out


# --- the handler ----------------------------------------------------------------------


def set_rollback():
    from rest_framework.views import set_rollback as drf_set_rollback

    drf_set_rollback()


def problem_exception_handler(exc, context):
    """DRF EXCEPTION_HANDLER: every error becomes problem+json.

    Domain errors map to HTTP: TransitionNotAllowed and ConcurrentUpdate ->
    409, PermissionDenied -> 403, DefinitionError/ValueError -> 422. Anything
    else unexpected returns None so Django's 500 handling (and logging) runs.
    """
    request = context.get("request")
    headers = {}

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, domain.TransitionNotAllowed):
        set_rollback()
        return problem_response(
            409,
            request=request,
            problem_type="transition-not-allowed",
            detail=str(exc),
            current_state=exc.current_state,
            allowed_transitions=exc.allowed,
        )
    if isinstance(exc, domain.ConcurrentUpdate):
        set_rollback()
        return problem_response(
            409,
            request=request,
            problem_type="concurrent-update",
            detail=str(exc) or "Another request changed this object first; read it and retry.",
        )
    if isinstance(exc, domain.PermissionDenied):
        set_rollback()
        return problem_response(
            403, request=request, problem_type="forbidden", detail=str(exc) or "Forbidden."
        )
    if isinstance(exc, domain.DefinitionError):
        set_rollback()
        return problem_response(
            422,
            request=request,
            problem_type="validation",
            detail="The request is not valid.",
            errors=[{"path": p, "message": m, "code": "invalid"} for p, m in exc.errors],
        )

    if not isinstance(exc, exceptions.APIException):
        return None

    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
        exc.status_code = 401

    status_code = exc.status_code
    errors: list = []
    extra: dict = {}
    problem_type = PROBLEM_TYPES.get(status_code, "error")

    if isinstance(exc, Problem):
        problem_type = exc.problem_type
        errors = exc.errors
        extra = exc.extra
        detail = str(exc.detail)
    elif isinstance(exc, exceptions.ValidationError):
        # A well-formed request with invalid fields: 422 with field paths.
        status_code = 422
        problem_type = "validation"
        errors = flatten_errors(exc.detail)
        detail = "The request is not valid; see errors for each field."
    elif isinstance(exc, exceptions.ParseError):
        # Never echo the parser's message: it may quote the body. Ours don't.
        detail = "The body is not valid JSON."
        if isinstance(exc, ReadableParseError):
            detail = str(exc.detail)
        problem_type = "malformed-body"
    else:
        detail = str(exc.detail) if not isinstance(exc.detail, dict | list) else ""
        if isinstance(exc.detail, dict | list):
            errors = flatten_errors(exc.detail)

    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    set_rollback()
    return problem_response(
        status_code,
        request=request,
        headers=headers or None,
        problem_type=problem_type,
        detail=detail,
        errors=errors,
        **extra,
    )


# --- a parser that caps the body and never echoes it ----------------------------------


class ReadableParseError(exceptions.ParseError):
    """A parse error whose own text is shown (it never quotes the body)."""


class NestedTooDeep(ReadableParseError):
    default_detail = (
        f"The body nests objects and lists deeper than {MAX_JSON_DEPTH} levels; "
        "Baton reads no deeper."
    )


class NumberOutOfRange(ReadableParseError):
    default_detail = (
        "The body holds a number beyond the range of a double (about 1.8e308), "
        "which Baton cannot store."
    )


class _InfiniteNumber(ValueError):
    pass


def _finite_float(text: str) -> float:
    """json's parse_float: '1e999' would read as infinity, which no JSON
    column stores (PostgreSQL refuses it: a 500)."""
    value = float(text)
    if math.isinf(value):
        raise _InfiniteNumber(text[:20])
    return value


def json_loads(text: str):
    """json.loads as every inbound body is read: no NaN or Infinity, no
    number that reads as infinity (ValueError for all of them)."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


class LimitedJSONParser(JSONParser):
    """JSON parser with a 1 MiB cap (413) that never quotes the body in errors."""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return None
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        if not raw.strip():
            raise exceptions.ParseError("empty body")
        try:
            data = json_loads(raw.decode("utf-8"))
        except _InfiniteNumber:
            raise NumberOutOfRange() from None
        except (ValueError, UnicodeDecodeError):
            raise exceptions.ParseError("invalid JSON") from None
        except RecursionError:
            raise NestedTooDeep() from None
        if json_deeper_than(data, MAX_JSON_DEPTH):
            raise NestedTooDeep()
        return data


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def body_too_large(request) -> bool:
    """Cheap early check of Content-Length, before authentication runs."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > MAX_BODY_BYTES


# --- Django-level handlers for /api/ paths ----------------------------------------------


def _django_problem(request, status_code, problem_type, detail):
    body = problem_body(
        status_code, problem_type=problem_type, detail=detail, instance=request.path
    )
    return HttpResponse(json.dumps(body), status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def length_required_problem(request) -> HttpResponse | None:
    """411 for a body sent without Content-Length (`Transfer-Encoding:
    chunked`): the WSGI server decodes it, but Django reads only as many
    bytes as Content-Length says, so the view saw an empty body and answered
    with a misleading "field required" for every field. None otherwise."""
    if request.META.get("CONTENT_LENGTH") or not request.META.get("HTTP_TRANSFER_ENCODING"):
        return None
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    return _django_problem(
        request,
        411,
        "length-required",
        "Send the body with a Content-Length header; chunked request bodies are not read.",
    )


def problem_for_debug_page(request, response):
    """The problem+json answer for a 4xx that Django rendered as its HTML
    debug page (DEBUG=True skips handler404 for a URL that resolves to
    nothing, e.g. a path without its trailing slash), else `response`.
    A 500's debug page stays: with DEBUG on, a developer is reading it."""
    if not 400 <= response.status_code < 500:
        return response
    if not response.get("Content-Type", "").startswith("text/html"):
        return response
    problem_type = PROBLEM_TYPES.get(response.status_code, "bad-request")
    detail = (
        "No such resource."
        if response.status_code == 404
        else TITLES.get(response.status_code, "Bad request") + "."
    )
    return _django_problem(request, response.status_code, problem_type, detail)


def is_api_path(request) -> bool:
    return request.path.startswith("/api/")


def api_handler404(request, exception=None):
    if is_api_path(request):
        return _django_problem(request, 404, "not-found", "No such resource.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def api_handler500(request):
    if is_api_path(request):
        return _django_problem(
            request,
            500,
            "server-error",
            "An unexpected error occurred; it has been logged with the request id.",
        )
    from django.views.defaults import server_error

    return server_error(request)


def api_handler400(request, exception=None):
    if is_api_path(request):
        return _django_problem(request, 400, "bad-request", "Bad request.")
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def api_handler403(request, exception=None):
    if is_api_path(request):
        return _django_problem(request, 403, "forbidden", "Forbidden.")
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)


__all__ = [
    "MAX_BODY_BYTES",
    "PROBLEM_CONTENT_TYPE",
    "ConflictProblem",
    "PayloadTooLarge",
    "PhiDetected",
    "Problem",
    "Unprocessable",
    "api_handler400",
    "api_handler403",
    "api_handler404",
    "api_handler500",
    "body_too_large",
    "flatten_errors",
    "problem_exception_handler",
    "problem_response",
]
