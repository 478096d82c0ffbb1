"""The PHI guard: all 18 Safe Harbor kinds, as keys or values, nested; opaque refs pass."""

import logging
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations import phi
from integrations.phi import (
    phi_allowance_create,
    phi_allowance_delete,
    phi_allowed_paths,
    phi_scan,
)
from programs.actors import Actor
from programs.models import AuditEvent

# (kind, key that names the identifier, value that carries it under a neutral key)
SAFE_HARBOR = [
    ("name", "first_name", "Dr. Alice Walker"),
    ("geography", "zipCode", "1600 Pennsylvania Avenue"),
    ("date", "date_of_birth", "03/14/1962"),
    ("phone", "homePhone", "(555) 123-4567"),
    ("fax", "fax_number", "+15551234567"),
    ("email", "email", "alice.walker@example.org"),
    ("ssn", "ssn", "123-45-6789"),
    ("mrn", "medical_record_number", "MRN: 00482913"),
    ("health_plan", "health_plan_id", None),
    ("account", "account_number", "4111 1111 1111 1111"),
    ("license", "drivers_license", None),
    ("vehicle", "vin", "1HGCM82633A004352"),
    ("device", "serial_number", "00:1A:2B:3C:4D:5E"),
    ("url", "website", "https://facebook.com/alice.walker"),
    ("ip", "ip_address", "192.168.14.201"),
    ("biometric", "fingerprint", None),
    ("photo", "photo", "data:image/png;base64,iVBORw0KGgo="),
    ("unique code", "passport", None),
]


@pytest.mark.parametrize("kind,key,value", SAFE_HARBOR, ids=[k for k, _, _ in SAFE_HARBOR])
def test_identifier_named_by_key_is_rejected_nested_anywhere(kind, key, value):
    # given: the identifier's key deep inside data, also inside a list
    payload = {"id": "e1", "data": {"device": {"readings": [{"ok": 1}, {key: "x7"}]}}}
    # when
    findings = phi_scan(payload)
    # then
    assert [f.path for f in findings] == [f"$.data.device.readings[1].{key}"]
    assert findings[0].where == "key"


@pytest.mark.parametrize(
    "kind,key,value",
    [row for row in SAFE_HARBOR if row[2] is not None],
    ids=[k for k, _, v in SAFE_HARBOR if v is not None],
)
def test_identifier_carried_by_value_is_rejected(kind, key, value):
    # given: a neutral key, a value that carries the identifier
    payload = {"data": {"notes": ["fine", {"comment": value}]}}
    # when
    findings = phi_scan(payload)
    # then
    assert len(findings) == 1
    assert findings[0].path == "$.data.notes[1].comment"
    assert findings[0].where == "value"
    error = findings[0].as_error()
    assert value not in str(error)  # never echoes the value


@pytest.mark.parametrize(
    "value",
    [
        "EHR-7F3K2",
        "550e8400-e29b-41d4-a716-446655440000",
        "550E8400E29B41D4A716446655440000",
        "2024-05-01T10:30:00Z",
        "2024-05-01T10:30:00.123456+02:00",
        "device.synced",
        "coaching.intro_completed",
        "America/New_York",
        "en-US",
        "v1.2.3",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "SCALE-2024-000123",
        "batch 42 of 500",
        "cohort-a",
        "10:30",
        "weight_kg",
        "18.5",
    ],
)
def test_opaque_references_and_operational_values_pass(value):
    payload = {
        "id": value,
        "type": "device.synced",
        "external_ref": value,
        "occurred_at": "2024-05-01T10:30:00Z",
        "data": {"ref": value, "shipped_at": "2024-05-01", "tags": [value], "weight": 81.2},
    }
    assert phi_scan(payload) == []


def test_dates_are_phi_only_when_they_belong_to_the_person():
    # given
    operational = {"occurred_at": "2024-05-01T10:30:00Z", "data": {"shipped_on": "2024-05-01"}}
    personal = {"data": {"patient": {"dob": "1962-03-14"}, "BirthDate": "1962-03-14"}}
    year_only = {"data": {"birth_year": 1962}}
    # when / then
    assert phi_scan(operational) == []
    assert {(f.path, f.kind) for f in phi_scan(personal)} == {
        ("$.data.patient.dob", "date"),
        ("$.data.BirthDate", "date"),
    }
    assert phi_scan(year_only) == []


def test_keys_themselves_that_carry_values_are_caught():
    # given: an identifier used as a map key
    payload = {"data": {"alice@example.org": {"score": 3}}}
    # when: twice (the second time the key's verdict comes from the key cache)
    first, second = phi_scan(payload), phi_scan(payload)
    # then: the path names the object holding the key, never the key itself
    expected = [("$.data", "email")]
    assert [(f.path, f.kind) for f in first] == expected
    assert [(f.path, f.kind) for f in second] == expected
    assert "alice" not in str(first[0].as_error())
    assert "one of its keys" in first[0].as_error()["message"]


def test_a_timestamp_is_phi_when_it_belongs_to_the_person():
    payload = {
        "occurred_at": "2024-05-01T10:30:00Z",
        "data": {
            "patient": {"birth_date": "1962-03-14T00:00:00+02:00"},
            "seen": "1962-03-14 08:15",
        },
    }
    assert [(f.path, f.kind) for f in phi_scan(payload)] == [("$.data.patient.birth_date", "date")]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.from_regex(phi._TIMESTAMP, fullmatch=True),
        st.builds(
            lambda moment, offset, spec, sep: moment.replace(tzinfo=offset).isoformat(
                sep=sep, timespec=spec
            ),
            st.datetimes(min_value=datetime(1, 1, 1) + timedelta(days=1)),
            st.sampled_from(
                [None, UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))]
            ),
            st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds"]),
            st.sampled_from(["T", " "]),
        ),
    )
)
def test_the_timestamp_shortcut_hides_no_finding(timestamp):
    """classify_value returns None for an exact timestamp without trying the
    patterns; the patterns, tried anyway, find nothing in one either, except
    one false positive the shortcut rightly avoids: a five-digit fraction
    before a colon-less offset ('…:00.12345-0500') reads as a ZIP+4."""
    assert phi.classify_value(timestamp) is None
    found = phi._classify_text(timestamp)
    if re.search(r"\.[0-9]{5}-[0-9]{4}$", timestamp):  # phi._ZIP4
        assert found in (None, "geography")
    else:
        assert found is None


def test_empty_values_under_phi_named_keys_carry_nothing():
    assert phi_scan({"data": {"email": "", "phone": None}}) == []


@pytest.mark.django_db
def test_allowlisted_path_passes_and_changes_are_audited(program):
    # given
    allowance = phi_allowance_create(
        program=program,
        json_path="$.data.device.serial_number",
        reason="device vendor needs the scale serial for RMA; reviewed by compliance",
        actor=Actor.system("test"),
    )
    payload = {"data": {"device": {"serial_number": "SN-99812"}, "email": "a@b.io"}}
    allow = phi_allowed_paths(program_ids=[program.pk])
    # when
    findings = phi_scan(payload, allow=allow)
    # then
    assert [f.path for f in findings] == ["$.data.email"]
    assert AuditEvent.objects.filter(action="phi_allowance.created").count() == 1
    # and removal is audited too
    phi_allowance_delete(allowance_id=allowance.pk, actor=Actor.system("test"))
    assert AuditEvent.objects.filter(action="phi_allowance.deleted").count() == 1
    assert phi_allowed_paths(program_ids=[program.pk]) == frozenset()


@pytest.mark.django_db
def test_allowance_needs_a_valid_path_and_a_reason(program):
    with pytest.raises(ValueError, match="JSON path"):
        phi_allowance_create(program=program, json_path="data.x", reason="r", actor="x")
    with pytest.raises(ValueError, match="reason"):
        phi_allowance_create(program=program, json_path="$.data.x", reason=" ", actor="x")


def test_wildcard_allowance_matches_any_index():
    payload = {"data": {"items": [{"serial": "A1"}, {"serial": "B2"}]}}
    assert phi_scan(payload, allow={"$.data.items[*].serial"}) == []


def test_guard_logs_nothing(caplog):
    # given
    caplog.set_level(logging.DEBUG)
    # when
    phi_scan({"data": {"comment": "call 555-123-4567"}})
    # then
    assert "555-123-4567" not in caplog.text
