"""Template placeholders: PHI-free variables only.

A placeholder is `{{ name }}`. The allowed names are Baton's own operational
facts (program and organization name, step title, due date and time) and
`link_<name>` for each link to the customer's tools declared on the template.
Anything else is refused when the template is saved, naming the variable;
names that would identify a participant are refused as disallowed (Baton
does not hold them). No tags, filters or expressions: this is substitution,
not a template language.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
LINK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

BASE_VARIABLES = {
    "program_name": "The program's name",
    "organization_name": "The organization's name",
    "step_title": "The step's title",
    "due_date": "The step's due date in the participant's timezone, e.g. Tue 5 Mar",
    "due_time": "The step's due time in the participant's timezone, e.g. 14:30",
}

# Names a template author might reach for that would carry PHI.
DISALLOWED_HINTS = (
    "name",
    "first_name",
    "last_name",
    "full_name",
    "phone",
    "mobile",
    "email",
    "address",
    "street",
    "city",
    "zip",
    "postcode",
    "dob",
    "birth",
    "birthday",
    "age",
    "ssn",
    "mrn",
    "medical_record",
    "insurance",
    "member_id",
    "diagnosis",
    "condition",
    "weight",
    "a1c",
    "glucose",
    "ip",
    "device_id",
)

SAMPLE_VARIABLES = {
    "program_name": "Diabetes Prevention Program",
    "organization_name": "Demo Health Co.",
    "step_title": "Invitation message",
    "due_date": "Tue 5 Mar",
    "due_time": "14:30",
}


class TemplateVariableError(ValueError):
    """`errors` is a list of (field, message)."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.errors))

    @property
    def by_field(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for field, message in self.errors:
            out.setdefault(field, []).append(message)
        return out


def _is_disallowed(name: str) -> bool:
    parts = set(name.split("_"))
    return name in DISALLOWED_HINTS or bool(
        parts & {"phone", "email", "address", "dob", "ssn", "mrn", "name", "birth", "zip"}
    )


def allowed_variables(links: dict | None) -> list[str]:
    return sorted(BASE_VARIABLES) + sorted(f"link_{k}" for k in (links or {}))


def validate_template(*, subject: str, body: str, links: dict | None) -> None:
    """Raise TemplateVariableError naming each unknown or disallowed variable."""
    errors = []
    links = links or {}
    if not isinstance(links, dict):
        errors.append(("links", 'must be an object such as {"app": "https://…"}'))
        links = {}
    for name, url in links.items():
        if not isinstance(name, str) or not LINK_NAME.match(name):
            errors.append(("links", f"link name {name!r} must be lowercase letters, digits, _"))
        elif not isinstance(url, str) or urlsplit(url).scheme not in ("https", "http"):
            errors.append(("links", f"link {name!r} must be an http(s) URL"))
        elif "{" in url or "?" in url:
            # A static link to the tool; a per-participant query would carry identifiers.
            errors.append(("links", f"link {name!r} must be a static URL without a query"))
    allowed = set(allowed_variables(links if isinstance(links, dict) else {}))
    for field, text in (("subject", subject or ""), ("body", body or "")):
        if "{%" in text or "%}" in text:
            errors.append((field, "template tags ({% … %}) are not supported; use {{ variable }}"))
        for match in PLACEHOLDER.finditer(text):
            name = match.group(1)
            if not NAME.match(name):
                errors.append((field, f"{{{{ {name} }}}} is not a plain variable name"))
            elif name in allowed:
                continue
            elif _is_disallowed(name):
                errors.append(
                    (
                        field,
                        f"{{{{ {name} }}}} is disallowed: it would identify the participant, "
                        "and Baton holds no such data (the messaging tool adds contact details)",
                    )
                )
            else:
                errors.append(
                    (
                        field,
                        f"{{{{ {name} }}}} is an unknown variable; allowed: "
                        + ", ".join(sorted(allowed)),
                    )
                )
        leftover = PLACEHOLDER.sub("", text)
        if "{{" in leftover or "}}" in leftover:
            errors.append((field, "unbalanced {{ or }}"))
    if errors:
        raise TemplateVariableError(errors)


def build_variables(
    *,
    program_name: str,
    organization_name: str,
    step_title: str,
    due_at: datetime | None,
    timezone_name: str,
    links: dict | None,
) -> dict:
    """The PHI-free variables of one message (stored on it and sent to the tool)."""
    variables = {
        "program_name": program_name,
        "organization_name": organization_name,
        "step_title": step_title,
        "due_date": "",
        "due_time": "",
    }
    if due_at is not None:
        try:
            local = due_at.astimezone(ZoneInfo(timezone_name))
        except (KeyError, ValueError):
            local = due_at
        variables["due_date"] = f"{local:%a} {local.day} {local:%b}"
        variables["due_time"] = f"{local:%H:%M}"
    for name, url in (links or {}).items():
        variables[f"link_{name}"] = url
    return variables


def render(text: str, variables: dict) -> str:
    """Substitute placeholders; an unknown one renders empty (validation stops it earlier)."""
    return PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), "")), text or "")
