"""The workflow definition language: a JSON Schema plus the semantic checks a
schema cannot express. Errors name the path in the document and the reason.

A definition maps enrollment states to stages; each stage lists the steps
that are instantiated when an enrollment enters that state.
"""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import available_timezones

from django.utils.dateparse import parse_duration
from jsonschema import Draft202012Validator

from programs.errors import DefinitionError

# The enrollment states a stage may attach to (the engine lives in
# participants; the vocabulary is part of the definition language).
ENROLLMENT_STATES = (
    "referred",
    "eligible",
    "ineligible",
    "invited",
    "onboarding",
    "active",
    "paused",
    "completed",
    "withdrawn",
)
ENROLLMENT_TRANSITIONS = (
    "screen_eligible",
    "screen_ineligible",
    "invite",
    "start_onboarding",
    "activate",
    "pause",
    "resume",
    "complete",
    "withdraw",
)
# The state each transition leaves from (participants' Enrollment machine;
# participants/tests/test_models.py checks that the two agree). A stage's
# `on_complete` must leave from the stage's own state, or it never fires.
TERMINAL_STATES = ("ineligible", "completed", "withdrawn")
TRANSITION_SOURCES = {
    "screen_eligible": ("referred",),
    "screen_ineligible": ("referred",),
    "invite": ("eligible",),
    "start_onboarding": ("invited",),
    "activate": ("onboarding",),
    "pause": ("active",),
    "resume": ("paused",),
    "complete": ("active",),
    "withdraw": tuple(s for s in ENROLLMENT_STATES if s not in TERMINAL_STATES),
}
STEP_KINDS = ("message", "partner_task", "manual", "wait_event")
SEVERITIES = ("low", "medium", "high", "critical")

_DURATION = r"^P(?!$)(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
_KEY = r"^[a-z][a-z0-9_]{0,62}$"
_EVENT_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_TIME = r"^([01]\d|2[0-3]):[0-5]\d$"

STEP_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "title", "kind"],
    "properties": {
        "key": {"type": "string", "pattern": _KEY},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "kind": {"enum": list(STEP_KINDS)},
        "due_after": {"type": "string", "pattern": _DURATION},
        "completes_on": {"type": "string", "pattern": _EVENT_TYPE},
        "required": {"type": "boolean"},
        "escalation": {
            "type": "object",
            "additionalProperties": False,
            "required": ["severity"],
            "properties": {"severity": {"enum": list(SEVERITIES)}},
        },
        "message": {
            "type": "object",
            "additionalProperties": False,
            "required": ["template"],
            "properties": {
                "template": {"type": "string", "pattern": _KEY},
                "complete_on": {"enum": ["sent", "delivered"]},
                "reminder_template": {"type": "string", "pattern": _KEY},
            },
        },
        "partner": {"type": "string", "maxLength": 100},
        "description": {"type": "string", "maxLength": 2000},
    },
}

DEFINITION_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["program", "stages"],
    "properties": {
        "program": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slug", "name"],
            "properties": {
                "slug": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,49}$"},
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "timezone": {"type": "string"},
                "quiet_hours": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["start", "end"],
                    "properties": {
                        "start": {"type": "string", "pattern": _TIME},
                        "end": {"type": "string", "pattern": _TIME},
                    },
                },
                "description": {"type": "string", "maxLength": 2000},
            },
        },
        "stages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "state", "steps"],
                "properties": {
                    "key": {"type": "string", "pattern": _KEY},
                    "title": {"type": "string", "maxLength": 200},
                    "state": {"enum": list(ENROLLMENT_STATES)},
                    "on_complete": {"enum": list(ENROLLMENT_TRANSITIONS)},
                    "steps": {"type": "array", "items": STEP_SCHEMA},
                },
            },
        },
    },
}

_validator = Draft202012Validator(DEFINITION_SCHEMA)


def format_path(parts) -> str:
    """`["stages", 0, "steps", 2, "due_after"]` -> `stages[0].steps[2].due_after`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def _schema_message(error) -> str:
    if error.validator == "pattern":
        hints = {
            _DURATION: "an ISO 8601 duration such as P2D, PT4H or P1DT12H",
            _KEY: "a lowercase key: letters, digits and underscores, starting with a letter",
            _EVENT_TYPE: "a dotted event type such as device.synced",
            _TIME: "a 24-hour local time HH:MM",
        }
        expected = hints.get(error.validator_value, f"text matching {error.validator_value}")
        return f"{error.instance!r} is not {expected}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of: {', '.join(map(str, error.validator_value))}"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties", "unknown field(s)")
    return error.message


def parse_iso_duration(value: str) -> timedelta:
    parsed = parse_duration(value)
    if parsed is None:
        raise ValueError(f"{value!r} is not an ISO 8601 duration")
    return parsed


def validate_definition(document) -> dict:
    """Return the document if valid; raise DefinitionError listing every problem."""
    if not isinstance(document, dict):
        raise DefinitionError([("(document)", "a definition must be a mapping at the top level")])
    errors = [
        (format_path(e.absolute_path), _schema_message(e))
        for e in sorted(_validator.iter_errors(document), key=lambda e: list(map(str, e.path)))
    ]
    if errors:
        raise DefinitionError(errors)

    program = document["program"]
    tz = program.get("timezone", "UTC")
    if tz not in available_timezones():
        errors.append(("program.timezone", f"{tz!r} is not a known IANA timezone"))
    seen_states: dict[str, int] = {}
    seen_steps: dict[str, str] = {}
    for i, stage in enumerate(document["stages"]):
        if stage["state"] in seen_states:
            errors.append(
                (
                    f"stages[{i}].state",
                    f"state {stage['state']!r} already has stage {seen_states[stage['state']]}",
                )
            )
        seen_states[stage["state"]] = i
        if stage["state"] in TERMINAL_STATES and stage["steps"]:
            errors.append(
                (
                    f"stages[{i}].state",
                    f"{stage['state']!r} is a final state: nothing happens after it, "
                    "so it can have no steps",
                )
            )
        on_complete = stage.get("on_complete")
        if on_complete and stage["state"] not in TRANSITION_SOURCES.get(on_complete, ()):
            allowed = [t for t, sources in TRANSITION_SOURCES.items() if stage["state"] in sources]
            errors.append(
                (
                    f"stages[{i}].on_complete",
                    f"{on_complete!r} cannot run from {stage['state']!r}; "
                    f"from there: {', '.join(allowed) or 'nothing'}",
                )
            )
        for j, step in enumerate(stage["steps"]):
            path = f"stages[{i}].steps[{j}]"
            if step["key"] in seen_steps:
                errors.append(
                    (
                        f"{path}.key",
                        f"step key {step['key']!r} is already used at {seen_steps[step['key']]}",
                    )
                )
            seen_steps[step["key"]] = path
            kind = step["kind"]
            if kind in ("wait_event", "partner_task") and "completes_on" not in step:
                errors.append(
                    (
                        f"{path}.completes_on",
                        f"a {kind} step needs the event type that completes it",
                    )
                )
            if kind == "message" and "message" not in step:
                errors.append((f"{path}.message", "a message step needs message.template"))
            if kind != "message" and "message" in step:
                errors.append((f"{path}.message", f"only message steps send a message, not {kind}"))
            if "due_after" in step:
                try:
                    parse_iso_duration(step["due_after"])
                except ValueError as exc:
                    errors.append((f"{path}.due_after", str(exc)))
    if errors:
        raise DefinitionError(errors)
    return document


_YAML_LINE = re.compile(r"line (\d+)")


def load_definition_text(text: str) -> dict:
    """Parse YAML (or JSON) text and validate it."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        raise DefinitionError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    return validate_definition(document)
