"""Request ids: one per request (or taken from a trusted `X-Request-ID`),
carried in a context variable so logs and audit rows can name it."""

import contextvars
import logging
import re
import uuid

_current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "baton_request_id", default=""
)
_VALID_INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def get_request_id() -> str:
    return _current_request_id.get()


def set_request_id(value: str) -> contextvars.Token:
    return _current_request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _current_request_id.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Assigns `request.request_id` and echoes it in the `X-Request-ID` header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_INCOMING_ID.match(incoming) else new_request_id()
        request.request_id = request_id
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record):
        record.request_id = get_request_id() or "-"
        return True
