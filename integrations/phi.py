"""The PHI guard: reject inbound payloads that carry HIPAA Safe Harbor identifiers.

Baton keeps only opaque references and operational state. Every JSON body
that reaches the partner API is walked (keys and values, nested anywhere)
before anything is stored or logged. A finding names the JSON path and the
identifier kind, never the value.

Two detectors, both needed:
- by key name: `first_name`, `patientEmail`, `dob`, `mrn`, `ssn`, `zip`,
  `ip_address`, `photo`... (keys are split into words, so `patient_email`
  and `patientEmail` both hit `email`);
- by value pattern: e-mail addresses, phone numbers, SSNs, `MRN: 123`,
  URLs, IP and MAC addresses, street addresses, ZIP+4, US-style dates,
  card/account numbers (Luhn), VINs (check digit), image data URIs,
  honorific + name ("Dr. Smith").

Dates: ISO timestamps are operational (when the event happened) and pass;
any date under a key that names a person's date (birth, death, admission,
discharge...) is PHI, as is a bare `MM/DD/YYYY`-style date anywhere.
Opaque references (`EHR-7F3K2`, UUIDs, hashes) pass.

A program may allow specific paths (`ProgramPhiAllowance`, audited).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass

from django.db import transaction

from integrations.problems import quoted_key

# --- key names ------------------------------------------------------------------

# Joined (lower-case, separators removed) key names, exact match.
_EXACT_KEYS: dict[str, str] = {}


def _keys(kind: str, *names: str) -> None:
    for name in names:
        _EXACT_KEYS[name] = kind


_keys(
    "name",
    "name",
    "firstname",
    "lastname",
    "fullname",
    "givenname",
    "familyname",
    "middlename",
    "maidenname",
    "surname",
    "nickname",
    "legalname",
    "preferredname",
    "patientname",
    "participantname",
    "membername",
    "personname",
    "contactname",
    "guardianname",
    "caregivername",
    "mothersmaidenname",
    "fname",
    "lname",
    "initials",
    "emergencycontact",
)
_keys(
    "geography",
    "address",
    "streetaddress",
    "street",
    "addressline1",
    "addressline2",
    "address1",
    "address2",
    "homeaddress",
    "mailingaddress",
    "city",
    "town",
    "county",
    "zip",
    "zipcode",
    "postcode",
    "postalcode",
    "latitude",
    "longitude",
    "lat",
    "lng",
    "lon",
    "geolocation",
    "gps",
    "coordinates",
)
_keys(
    "date",
    "dob",
    "dateofbirth",
    "birthdate",
    "birthday",
    "dod",
    "dateofdeath",
    "deathdate",
    "admissiondate",
    "admitdate",
    "dischargedate",
)
_keys("phone", "phone", "telephone", "tel", "mobile", "cell", "cellphone", "phonenumber")
_keys("fax", "fax", "faxnumber")
_keys("email", "email", "emailaddress", "mail")
_keys("ssn", "ssn", "socialsecurity", "socialsecuritynumber", "sin", "nationalid")
_keys("mrn", "mrn", "medicalrecord", "medicalrecordnumber", "chartnumber", "patientnumber")
_keys(
    "health_plan",
    "healthplan",
    "healthplannumber",
    "healthplanid",
    "memberid",
    "membernumber",
    "subscriberid",
    "insuranceid",
    "insurancenumber",
    "policynumber",
    "beneficiaryid",
    "medicaidid",
    "medicareid",
    "groupnumber",
)
_keys(
    "account",
    "accountnumber",
    "bankaccount",
    "iban",
    "creditcard",
    "cardnumber",
    "routingnumber",
)
_keys(
    "license",
    "license",
    "licence",
    "licensenumber",
    "licencenumber",
    "driverslicense",
    "driverslicence",
    "passport",
    "passportnumber",
    "certificatenumber",
)
_keys("vehicle", "vin", "licenseplate", "licenceplate", "plate", "platenumber")
_keys(
    "device",
    "serialnumber",
    "deviceserial",
    "serial",
    "imei",
    "udid",
    "macaddress",
    "meid",
)
_keys("url", "url", "website", "homepage", "profileurl")
_keys("ip", "ip", "ipaddress", "ipv4", "ipv6", "clientip", "remoteaddr")
_keys(
    "biometric",
    "biometric",
    "fingerprint",
    "voiceprint",
    "retina",
    "retinascan",
    "iris",
    "faceid",
    "facetemplate",
)
_keys("photo", "photo", "picture", "image", "selfie", "avatar", "headshot", "portrait")

# Single words inside a compound key (`patient_email`, `homePhone`).
_WORD_KEYS: dict[str, str] = {
    "firstname": "name",
    "lastname": "name",
    "surname": "name",
    "email": "email",
    "phone": "phone",
    "telephone": "phone",
    "fax": "fax",
    "ssn": "ssn",
    "mrn": "mrn",
    "dob": "date",
    "birth": "date",
    "birthdate": "date",
    "death": "date",
    "zip": "geography",
    "zipcode": "geography",
    "postcode": "geography",
    "street": "geography",
    "address": "geography",
    "vin": "vehicle",
    "imei": "device",
    "passport": "license",
    "photo": "photo",
    "selfie": "photo",
    "fingerprint": "biometric",
    "biometric": "biometric",
}
# Word pairs: ("first", "name"), ("date", "birth")...
_PAIR_KEYS: dict[tuple[str, str], str] = {
    ("first", "name"): "name",
    ("last", "name"): "name",
    ("full", "name"): "name",
    ("given", "name"): "name",
    ("family", "name"): "name",
    ("middle", "name"): "name",
    ("maiden", "name"): "name",
    ("patient", "name"): "name",
    ("participant", "name"): "name",
    ("member", "name"): "name",
    ("contact", "name"): "name",
    ("legal", "name"): "name",
    ("preferred", "name"): "name",
    ("date", "birth"): "date",
    ("birth", "date"): "date",
    ("date", "death"): "date",
    ("admission", "date"): "date",
    ("admit", "date"): "date",
    ("discharge", "date"): "date",
    ("medical", "record"): "mrn",
    ("record", "number"): "mrn",
    ("health", "plan"): "health_plan",
    ("member", "id"): "health_plan",
    ("insurance", "id"): "health_plan",
    ("policy", "number"): "health_plan",
    ("account", "number"): "account",
    ("card", "number"): "account",
    ("social", "security"): "ssn",
    ("license", "number"): "license",
    ("licence", "number"): "license",
    ("drivers", "license"): "license",
    ("license", "plate"): "vehicle",
    ("serial", "number"): "device",
    ("device", "serial"): "device",
    ("mac", "address"): "device",
    ("ip", "address"): "ip",
    ("email", "address"): "email",
    ("phone", "number"): "phone",
    ("street", "address"): "geography",
    ("postal", "code"): "geography",
    ("zip", "code"): "geography",
    ("home", "address"): "geography",
    ("profile", "url"): "url",
    ("profile", "photo"): "photo",
}
_DATE_KEY_WORDS = frozenset({"birth", "dob", "death", "admission", "admit", "discharge", "dod"})

_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_key_cache: dict[str, tuple[str | None, bool, str | None]] = {}


def _classify_key(key: str) -> tuple[str | None, bool, str | None]:
    """(kind its name says or None, is_person_date_key, kind the key itself
    carries as text or None), cached: keys repeat across payloads."""
    cached = _key_cache.get(key)
    if cached is not None:
        return cached
    words = [w.lower() for w in _SPLIT.split(key) if w]
    joined = "".join(words)
    kind = _EXACT_KEYS.get(joined)
    if kind is None:
        for word in words:
            kind = _WORD_KEYS.get(word)
            if kind:
                break
    if kind is None:
        for pair in itertools.pairwise(words):
            kind = _PAIR_KEYS.get(pair)
            if kind:
                break
    is_date_key = any(w in _DATE_KEY_WORDS for w in words)
    if "year" in words or "yr" in words:
        # a year alone is not an identifier under Safe Harbor
        is_date_key = False
        if kind == "date":
            kind = None
    # a key can itself be an identifier ({"jane@example.org": ...})
    text_kind = classify_value(key) if kind is None and len(key) >= 6 else None
    result = (kind, is_date_key, text_kind)
    if len(_key_cache) < 10_000:
        _key_cache[key] = result
    return result


# --- value patterns ---------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SSN = re.compile(r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)")
_PHONE = re.compile(
    r"(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])"
    r"|(?<![\w-])\+\d{7,15}(?!\w)"
)
_MRN = re.compile(r"\b(?:MRN|medical record(?: number| no\.?)?)\s*[:#-]?\s*[A-Z0-9-]*\d", re.I)
_URL = re.compile(r"\b(?:https?|ftp)://|\bwww\.[a-z0-9-]+\.[a-z]", re.I)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}")
_MAC = re.compile(r"\b(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b")
_STREET = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|"
    r"Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace|Parkway|Pkwy|Highway|Hwy)\b\.?"
)
_POBOX = re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+", re.I)
_ZIP4 = re.compile(r"(?<![\w-])\d{5}-\d{4}(?![\w-])")
_SLASH_DATE = re.compile(
    r"(?<![\d/])(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:\d{4}|\d{2})(?![\d/])"
)
_ISO_DATE = re.compile(r"(?<!\d)(?:1[89]|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
_WORD_DATE = re.compile(
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4}\b"
)
_DIGIT_RUN = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")
_DATA_IMAGE = re.compile(r"^data:image/", re.I)
_HONORIFIC = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr)\.?\s+[A-Z][a-z]+")
_SSN_LABEL = re.compile(r"\bSSN\s*[:#]?\s*\d", re.I)


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_VIN_VALUES = {
    **{str(i): i for i in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _vin_ok(vin: str) -> bool:
    if not (any(c.isdigit() for c in vin) and any(c.isalpha() for c in vin)):
        return False
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    check = total % 11
    return vin[8] == ("X" if check == 10 else str(check))


def _is_ip(text: str) -> bool:
    for match in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        return True
    if text.count(":") >= 2:
        for match in _IPV6_HINT.finditer(text):
            candidate = match.group()
            if candidate.count(":") < 2 or len(candidate) < 3:
                continue
            # times like 10:30:00 are not addresses
            if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", candidate):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            return True
    return False


# An exact timestamp, as every partner event's `occurred_at`: the only
# identifier it can carry is its date, which the walk judges by the key it
# sits under (a birth date's, say); none of the patterns below match one
# (test_phi.py checks that over generated timestamps). Partner payloads are
# full of them, and the patterns cost about 18 us a timestamp.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}"
    r"(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


def classify_value(text: str) -> str | None:
    """The identifier kind a string value carries, or None."""
    if len(text) < 6 or _TIMESTAMP.fullmatch(text):
        return None
    return _classify_text(text)


def _classify_text(text: str) -> str | None:
    if "@" in text and _EMAIL.search(text):
        return "email"
    if _DATA_IMAGE.match(text):
        return "photo"
    has_digit = any(map(str.isdigit, text))  # a C-level loop: this runs per value
    if _URL.search(text):
        return "url"
    if not has_digit:
        return "name" if _HONORIFIC.search(text) else None
    if _SSN.search(text) or _SSN_LABEL.search(text):
        return "ssn"
    if _MRN.search(text):
        return "mrn"
    if _MAC.search(text):
        return "device"
    if ("." in text or ":" in text) and _is_ip(text):
        return "ip"
    if _PHONE.search(text):
        return "phone"
    if "/" in text and _SLASH_DATE.search(text):
        return "date"
    if _WORD_DATE.search(text):
        return "date"
    if _ZIP4.search(text) or _STREET.search(text) or _POBOX.search(text):
        return "geography"
    for match in _DIGIT_RUN.finditer(text):
        digits = match.group().replace(" ", "").replace("-", "")
        if _luhn_ok(digits):
            return "account"
    if len(text) >= 17:
        for match in _VIN.finditer(text):
            if _vin_ok(match.group()):
                return "vehicle"
    if _HONORIFIC.search(text):
        return "name"
    return None


# --- the walk -----------------------------------------------------------------------

KIND_LABELS = {
    "name": "a person's name",
    "geography": "geography smaller than a state (address, city, ZIP)",
    "date": "a date tied to a person (other than year)",
    "phone": "a telephone number",
    "fax": "a fax number",
    "email": "an e-mail address",
    "ssn": "a Social Security number",
    "mrn": "a medical record number",
    "health_plan": "a health plan beneficiary number",
    "account": "an account or card number",
    "license": "a certificate or licence number",
    "vehicle": "a vehicle identifier",
    "device": "a device identifier or serial number",
    "url": "a web URL",
    "ip": "an IP address",
    "biometric": "a biometric identifier",
    "photo": "a photograph or image",
}


_WHERE = {"key": "the key", "value": "the value", "keys": "one of its keys"}


@dataclass(frozen=True)
class PhiFinding:
    path: str
    kind: str
    where: str  # "key" (its name), "value", or "keys" (the text of a key of the object)

    def as_error(self) -> dict:
        label = KIND_LABELS.get(self.kind, self.kind)
        return {
            "path": self.path,
            "kind": self.kind,
            "code": "phi_detected",
            "message": f"looks like {label} (found in {_WHERE[self.where]}); "
            "send an opaque reference instead",
        }


_WILDCARD_INDEX = re.compile(r"\[\d+\]")


def _allowed(path: str, allow: frozenset[str]) -> bool:
    if not allow:
        return False
    if path in allow:
        return True
    return "[" in path and _WILDCARD_INDEX.sub("[*]", path) in allow


def _child_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return path + quoted_key(key)


def phi_scan(data, *, allow=frozenset(), limit: int = 20) -> list[PhiFinding]:
    """Walk `data` and return up to `limit` findings (path + kind, no values).

    Paths read `$.data.patient.email`, `$.tags[2]`. A path in `allow` (or its
    `[*]` form) is skipped together with everything under it.
    """
    findings: list[PhiFinding] = []
    allow = frozenset(allow)
    stack = [("$", data, False)]
    while stack and len(findings) < limit:
        path, value, date_key = stack.pop()
        if _allowed(path, allow):
            continue
        if isinstance(value, dict):
            for key, child in value.items():
                key = str(key)
                child_path = _child_path(path, key)
                if _allowed(child_path, allow):
                    continue
                kind, is_date_key, text_kind = _classify_key(key)
                if kind is None:
                    if text_kind:
                        # The key itself is the identifier (an email address
                        # used as a key): name the object holding it, since
                        # a path through the key would repeat it.
                        findings.append(PhiFinding(path, text_kind, "keys"))
                        continue
                elif child not in (None, "", [], {}, False):
                    # an empty value under a PHI-named key carries nothing
                    findings.append(PhiFinding(child_path, kind, "key"))
                    continue
                stack.append((child_path, child, is_date_key))
        elif isinstance(value, list):
            for index in range(len(value) - 1, -1, -1):
                stack.append((f"{path}[{index}]", value[index], date_key))
        elif isinstance(value, str):
            kind = classify_value(value)
            if kind is None and date_key and _ISO_DATE.search(value):
                kind = "date"
            if kind:
                findings.append(PhiFinding(path, kind, "value"))
        elif date_key and isinstance(value, int | float) and not isinstance(value, bool):
            findings.append(PhiFinding(path, "date", "value"))
    findings.sort(key=lambda f: f.path)
    return findings


# --- the allowlist (audited) -------------------------------------------------------

_PATH_SYNTAX = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_]*|\['[^']+'\]|\[(?:\d+|\*)\])+$")


def valid_json_path(path: str) -> bool:
    return bool(_PATH_SYNTAX.match(path.strip()))


def phi_allowed_paths(*, program_ids) -> frozenset[str]:
    """The allowlisted paths of these programs (one query)."""
    from integrations.models import ProgramPhiAllowance

    ids = list(program_ids)
    if not ids:
        return frozenset()
    return frozenset(
        ProgramPhiAllowance.objects.filter(program_id__in=ids).values_list("json_path", flat=True)
    )


def phi_allowance_create(*, program, json_path: str, reason: str, actor):
    """Allow `json_path` through the PHI guard for `program`.

    Audited as `phi_allowance.created` with the path and the reason.
    """
    from integrations.models import ProgramPhiAllowance
    from programs.actors import as_actor
    from programs.services import audit_record

    json_path = json_path.strip()
    if not _PATH_SYNTAX.match(json_path):
        raise ValueError(f"{json_path!r} is not a JSON path like $.data.device.serial_number")
    if not reason.strip():
        raise ValueError("a reason is required for a PHI allowance")
    actor = as_actor(actor)
    with transaction.atomic():
        allowance = ProgramPhiAllowance.objects.create(
            program=program, json_path=json_path, reason=reason, created_by=actor.label[:200]
        )
        audit_record(
            actor=actor,
            action="phi_allowance.created",
            target=allowance,
            organization=program.organization_id,
            reason=reason,
            metadata={"program_id": program.pk, "json_path": json_path},
        )
    return allowance


def phi_allowance_delete(*, allowance_id: int, actor, reason: str = "") -> None:
    """Remove an allowance; audited as `phi_allowance.deleted`."""
    from integrations.models import ProgramPhiAllowance
    from programs.services import audit_record

    with transaction.atomic():
        allowance = (
            ProgramPhiAllowance.objects.select_for_update()
            .select_related("program")
            .get(pk=allowance_id)
        )
        audit_record(
            actor=actor,
            action="phi_allowance.deleted",
            target=allowance,
            organization=allowance.program.organization_id,
            reason=reason,
            metadata={"program_id": allowance.program_id, "json_path": allowance.json_path},
        )
        allowance.delete()
