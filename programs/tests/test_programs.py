import copy

import pytest
from django.core.management import CommandError, call_command

from programs.actors import Actor
from programs.definitions import load_definition_text, validate_definition
from programs.errors import DefinitionError, ImmutableVersionError, TransitionNotAllowed
from programs.models import AuditEvent, Program, ProgramVersion
from programs.services import (
    program_activate,
    program_load_definition,
    program_pause,
    program_resume,
    program_retire,
)
from programs.tests.conftest_paths import DPP_PATH

SYSTEM = Actor.system("test")


# --- state machine -----------------------------------------------------------------


@pytest.mark.django_db
def test_program_lifecycle_draft_active_paused_retired(org, dpp_document):
    version, _ = program_load_definition(organization=org, document=dpp_document, actor=SYSTEM)
    program = version.program
    assert program.state == "draft"
    program = program_activate(program_id=program.pk, actor=SYSTEM)
    program = program_pause(program_id=program.pk, actor=SYSTEM, reason="holiday")
    program = program_resume(program_id=program.pk, actor=SYSTEM)
    program = program_pause(program_id=program.pk, actor=SYSTEM)
    program = program_retire(program_id=program.pk, actor=SYSTEM, reason="funding ended")
    assert program.state == "retired"
    trail = list(
        AuditEvent.objects.filter(object_type="programs.program", object_id=str(program.pk))
        .order_by("id")
        .values_list("action", "from_state", "to_state")
    )
    assert trail[1:] == [
        ("program.activate", "draft", "active"),
        ("program.pause", "active", "paused"),
        ("program.resume", "paused", "active"),
        ("program.pause", "active", "paused"),
        ("program.retire", "paused", "retired"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "transition"),
    [
        ("draft", "pause"),
        ("draft", "resume"),
        ("draft", "retire"),
        ("active", "activate"),
        ("active", "resume"),
        ("paused", "pause"),
        ("paused", "activate"),
        ("retired", "activate"),
        ("retired", "pause"),
        ("retired", "resume"),
        ("retired", "retire"),
    ],
)
def test_illegal_program_transitions_name_state_and_allowed(org, state, transition):
    program = Program.objects.create(organization=org, slug="p", name="P")
    Program.objects.filter(pk=program.pk).update(state=state)  # arrange a state directly
    services = {
        "activate": program_activate,
        "pause": program_pause,
        "resume": program_resume,
        "retire": program_retire,
    }
    with pytest.raises(TransitionNotAllowed, match=f"it is {state}; allowed:"):
        services[transition](program_id=program.pk, actor=SYSTEM)
    assert Program.objects.get(pk=program.pk).state == state


@pytest.mark.django_db
def test_activation_needs_a_published_version(org):
    program = Program.objects.create(organization=org, slug="empty", name="Empty")
    with pytest.raises(TransitionNotAllowed):
        program_activate(program_id=program.pk, actor=SYSTEM)


@pytest.mark.django_db
def test_state_field_is_protected_from_direct_assignment(program):
    with pytest.raises(AttributeError):
        program.state = "retired"


# --- definitions ---------------------------------------------------------------------


def broken(dpp_document, mutate):
    document = copy.deepcopy(dpp_document)
    mutate(document)
    with pytest.raises(DefinitionError) as info:
        validate_definition(document)
    return dict(info.value.errors)


def test_the_shipped_dpp_definition_is_valid(dpp_document):
    assert validate_definition(dpp_document) is dpp_document
    onboarding = next(s for s in dpp_document["stages"] if s["state"] == "onboarding")
    titles = [s["title"] for s in onboarding["steps"]]
    assert any("Consent" in t for t in titles) and any("sync" in t.lower() for t in titles)


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (
            lambda d: d["stages"][2]["steps"][1].update(due_after="5 days"),
            "stages[2].steps[1].due_after",
            "ISO 8601 duration",
        ),
        (
            lambda d: d["stages"][2]["steps"][0].update(kind="carrier_pigeon"),
            "stages[2].steps[0].kind",
            "not one of",
        ),
        (lambda d: d["stages"][0].update(state="sleeping"), "stages[0].state", "'sleeping'"),
        (
            lambda d: d["stages"][2]["steps"][0].pop("completes_on"),
            "stages[2].steps[0].completes_on",
            "needs the event type",
        ),
        (
            lambda d: d["stages"][2]["steps"][2].update(key="consent_recorded"),
            "stages[2].steps[2].key",
            "already used",
        ),
        (
            lambda d: d["program"].update(timezone="Mars/Olympus"),
            "program.timezone",
            "IANA timezone",
        ),
        (
            lambda d: d["stages"][2]["steps"][0].update(colour="red"),
            "stages[2].steps[0]",
            "unknown field",
        ),
        (lambda d: d.pop("stages"), "(document)", "'stages' is a required property"),
        (
            lambda d: d["stages"][1]["steps"][0].pop("message"),
            "stages[1].steps[0].message",
            "needs message.template",
        ),
        (lambda d: d["stages"].append(dict(d["stages"][0])), "stages[4].state", "already has"),
        # accepted before, and then silently never fired
        (
            lambda d: d["stages"][0].update(on_complete="complete"),
            "stages[0].on_complete",
            "'complete' cannot run from 'referred'; from there: screen_eligible",
        ),
        (
            lambda d: d["stages"].append(
                {"key": "after", "state": "ineligible", "steps": d["stages"][0]["steps"][:1]}
            ),
            "stages[4].state",
            "final state",
        ),
    ],
)
def test_definition_errors_name_the_path_and_the_reason(dpp_document, mutate, path, fragment):
    errors = broken(dpp_document, mutate)
    assert path in errors, errors
    assert fragment in errors[path]


def test_malformed_yaml_names_line_and_column():
    with pytest.raises(DefinitionError) as info:
        load_definition_text("program: {slug: x\nstages: [")
    ((where, message),) = info.value.errors
    assert where.startswith("line ") and "not valid YAML" in message


def test_non_mapping_document_is_refused():
    with pytest.raises(DefinitionError, match="mapping"):
        load_definition_text("- just\n- a list\n")


# --- versions --------------------------------------------------------------------------


@pytest.mark.django_db
def test_published_version_is_immutable(program):
    version = program.latest_published_version()
    version.definition = {**version.definition, "stages": []}
    with pytest.raises(ImmutableVersionError):
        version.save()
    with pytest.raises(ImmutableVersionError):
        ProgramVersion.objects.get(pk=version.pk).delete()
    assert ProgramVersion.objects.get(pk=version.pk).definition["stages"]


@pytest.mark.django_db
def test_loading_a_changed_definition_adds_a_version_and_keeps_the_old(org, dpp_document):
    v1, created1 = program_load_definition(organization=org, document=dpp_document, actor=SYSTEM)
    same, created_same = program_load_definition(
        organization=org, document=copy.deepcopy(dpp_document), actor=SYSTEM
    )
    changed = copy.deepcopy(dpp_document)
    changed["stages"][2]["steps"][0]["due_after"] = "P10D"
    v2, created2 = program_load_definition(organization=org, document=changed, actor=SYSTEM)
    assert (created1, created_same, created2) == (True, False, True)
    assert same.pk == v1.pk
    assert (v1.number, v2.number) == (1, 2)
    v1.refresh_from_db()
    assert v1.definition["stages"][2]["steps"][0]["due_after"] == "P7D"
    assert v2.program.latest_published_version() == v2


# --- load_program command -----------------------------------------------------------------


@pytest.mark.django_db
def test_load_program_command_creates_then_reports_unchanged(org, capsys):
    call_command("load_program", str(DPP_PATH), org=org.slug)
    call_command("load_program", str(DPP_PATH), org=org.slug)
    out = capsys.readouterr().out
    assert "dpp: created version 1 (published)" in out
    assert "dpp: unchanged at version 1 (published)" in out


@pytest.mark.django_db
def test_load_program_says_when_it_publishes_a_draft(org, capsys):
    # loading the draft's file again publishes it; it printed "unchanged"
    call_command("load_program", str(DPP_PATH), org=org.slug, draft=True)
    call_command("load_program", str(DPP_PATH), org=org.slug)
    out = capsys.readouterr().out
    assert "dpp: created version 1 (draft)" in out
    assert "dpp: published version 1 (it was a draft)" in out


@pytest.mark.django_db
def test_load_program_refuses_a_file_that_is_not_utf8(org, tmp_path):
    # a traceback (UnicodeDecodeError) before
    bad = tmp_path / "utf16.yaml"
    bad.write_bytes("program: {}".encode("utf-16"))
    with pytest.raises(CommandError, match="is not UTF-8 text"):
        call_command("load_program", str(bad), org=org.slug)


@pytest.mark.django_db
def test_load_program_with_a_bad_file_lists_paths_and_writes_nothing(org, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DPP_PATH.read_text()
        .replace("due_after: P7D", "due_after: next week")
        .replace("kind: partner_task", "kind: fax")
    )
    with pytest.raises(CommandError) as info:
        call_command("load_program", str(bad), org=org.slug)
    message = str(info.value)
    assert "stages[2].steps[0].due_after" in message
    assert "stages[2].steps[1].kind" in message
    assert not Program.objects.filter(organization=org).exists()
    assert not ProgramVersion.objects.exists()


@pytest.mark.django_db
def test_load_program_names_a_missing_org_or_file(org, tmp_path):
    with pytest.raises(CommandError, match="no organization with slug 'nope'"):
        call_command("load_program", str(DPP_PATH), org="nope")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("load_program", str(tmp_path / "missing.yaml"), org=org.slug)


@pytest.mark.django_db
def test_activating_a_program_without_a_published_definition_says_what_is_missing(org):
    # it said "activate is not allowed from draft", which sounds like a state problem
    from programs.errors import TransitionNotAllowed

    program = Program.objects.create(organization=org, slug="bare", name="Bare")
    with pytest.raises(TransitionNotAllowed, match="has no published definition yet"):
        program_activate(program_id=program.pk, actor=SYSTEM)
