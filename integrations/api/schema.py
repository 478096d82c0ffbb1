"""OpenAPI details drf-spectacular cannot infer: the bearer scheme and the
problem+json error responses every operation can return."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "JSON path, e.g. $.data.email"},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                    "kind": {"type": "string", "description": "PHI identifier kind"},
                },
                "required": ["path", "message"],
            },
        },
        "current_state": {"type": "string"},
        "allowed_transitions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["type", "title", "status"],
}

ERROR_DESCRIPTIONS = {
    "400": "Malformed request (e.g. invalid JSON).",
    "401": "Missing, invalid, expired or revoked API key.",
    "403": "The key may not do this (read-only key, program out of scope).",
    "404": "No such resource visible to this key.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "409": "Conflict: transition not allowed, concurrent update, or Idempotency-Key in flight.",
    "413": "Body larger than 1 MiB.",
    "415": "Content-Type must be application/json.",
    "422": "Invalid fields, PHI detected, or Idempotency-Key reused with another body.",
    "429": "Throttled; see Retry-After.",
}
GET_ERRORS = ("400", "401", "403", "404", "405", "406", "422", "429")
POST_ERRORS = (*GET_ERRORS, "409", "413", "415")


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "integrations.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer btn_<prefix>_<secret>",
        }


def add_problem_responses(result, generator, request, public):
    """Postprocessing hook: document problem+json responses on every operation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Problem"}
    for _path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            codes = POST_ERRORS if method in ("post", "put", "patch") else GET_ERRORS
            for code in codes:
                if code in responses:
                    continue
                responses[code] = {
                    "description": ERROR_DESCRIPTIONS[code],
                    "content": {"application/problem+json": {"schema": ref}},
                }
                if code == "429":
                    responses[code]["headers"] = {
                        "Retry-After": {
                            "schema": {"type": "integer"},
                            "description": "Seconds to wait.",
                        }
                    }
            if method == "post":
                params = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in params):
                    params.append(
                        {
                            "in": "header",
                            "name": "Idempotency-Key",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 255,
                                "pattern": "^[!-~]+$",
                            },
                            "description": "Replays return the first response for 24 h.",
                        }
                    )
    return result
