"""Model-level guarantees: no PHI fields, constraints, registrations."""

import re

import pytest
from django.db import IntegrityError

from integrations.event_types import event_type
from participants.event_types import ALL_EVENTS
from participants.models import Enrollment, EnrollmentState, Participant, ParticipantEvent
from participants.services import participant_upsert
from participants.tests.conftest import SYSTEM
from programs.models import AuditEvent
from programs.registries import exception_kind

# Words that name a direct identifier (HIPAA Safe Harbor). A field whose name
# contains one does not belong on a participant; ask before adding any.
PHI_WORDS = re.compile(
    r"name|phone|mobile|fax|e_?mail|birth|dob|age$|address|street|city|zip|postal|"
    r"ssn|social|mrn|medical_record|insurance|health_plan|member_id|licen[cs]e|"
    r"vehicle|device_serial|ip_addr|photo|biometric|gender|sex|race|ethnic"
)
ALLOWED_FIELDS = {
    "id",
    "organization",
    "external_ref",
    "source_system",
    "timezone",
    "locale",
    "tags",
    "created_at",
    "updated_at",
    "enrollments",
    "events",
}


def test_participant_has_no_identifier_fields():
    names = {f.name for f in Participant._meta.get_fields()}
    offending = sorted(n for n in names if PHI_WORDS.search(n))
    assert offending == [], f"PHI-like fields on Participant: {offending}"
    # A new field needs a deliberate decision here, not a silent addition.
    assert names == ALLOWED_FIELDS


def test_external_ref_is_unique_per_organization(org, other_org):
    Participant.objects.create(organization=org, external_ref="a")
    Participant.objects.create(organization=other_org, external_ref="a")
    with pytest.raises(IntegrityError):
        Participant.objects.create(organization=org, external_ref="a")


def test_event_id_is_unique_per_organization(org):
    from django.utils import timezone

    fields = dict(event_type="x.y", external_ref="r", occurred_at=timezone.now())
    ParticipantEvent.objects.create(organization=org, event_id="e1", **fields)
    with pytest.raises(IntegrityError):
        ParticipantEvent.objects.create(organization=org, event_id="e1", **fields)


def test_upsert_creates_then_updates_only_what_changed(org):
    p, created = participant_upsert(
        organization=org, external_ref="ref-1", actor=SYSTEM, source_system="ehr", tags=["a"]
    )
    same, created_again = participant_upsert(organization=org, external_ref="ref-1", actor=SYSTEM)
    assert created and not created_again and same.pk == p.pk
    assert same.source_system == "ehr" and same.tags == ["a"]
    assert AuditEvent.objects.filter(action="participant.updated").count() == 0
    participant_upsert(
        organization=org, external_ref="ref-1", actor=SYSTEM, timezone="Europe/Berlin"
    )
    p.refresh_from_db()
    assert p.timezone == "Europe/Berlin"
    assert AuditEvent.objects.filter(action="participant.updated").count() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"external_ref": ""}, "external_ref"),
        ({"external_ref": "x" * 201}, "external_ref"),
        ({"external_ref": "r", "timezone": "Mars/Olympus"}, "timezone"),
        ({"external_ref": "r", "tags": "vip"}, "tags"),
    ],
)
def test_upsert_bad_input_names_the_field(org, kwargs, message):
    with pytest.raises(ValueError, match=message):
        participant_upsert(organization=org, actor=SYSTEM, **kwargs)
    assert Participant.objects.count() == 0


def test_auditor_may_not_register_participants(org, auditor):
    from programs.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        participant_upsert(organization=org, external_ref="r", actor=auditor)


def test_every_event_type_and_exception_kind_is_registered():
    for name in ALL_EVENTS:
        assert event_type(name).name == name
    for past in ("screened_eligible", "onboarding_started", "withdrawn", "referred"):
        assert f"participants.enrollment.{past}" in ALL_EVENTS
    assert exception_kind("sla_breach").key == "sla_breach"
    assert exception_kind("unmatched_event").key == "unmatched_event"


def test_the_definition_language_knows_the_enrollment_machine_as_it_is():
    # programs.definitions checks `on_complete` against TRANSITION_SOURCES;
    # it must say what the Enrollment state machine allows, no more, no less
    from programs.definitions import ENROLLMENT_STATES, TERMINAL_STATES, TRANSITION_SOURCES

    field = Enrollment._meta.get_field("state")
    sources: dict[str, set] = {}
    for transition in field.get_all_transitions(Enrollment):
        sources.setdefault(transition.name, set()).add(str(transition.source))
    assert {name: set(states) for name, states in TRANSITION_SOURCES.items()} == sources
    assert set(ENROLLMENT_STATES) == set(EnrollmentState.values)
    assert {s for s in EnrollmentState.values if s not in set().union(*sources.values())} == set(
        TERMINAL_STATES
    )
