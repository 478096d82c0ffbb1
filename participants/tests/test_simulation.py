"""`manage.py simulate`: faults spec, a small run through the real system, determinism.

The runs use the real services, jobs, outbox, webhook dispatcher and the
`webhook` messaging connector; only the clock (time_machine) and the far
side of the network (PartnerFake, a local HTTP server on 127.0.0.1) are
simulated. They need real commits (after-commit hooks, threads sending
webhooks), hence `transaction=True`.
"""

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from messaging.management.commands.load_templates import load_templates
from participants.models import Enrollment, ProgramMetricsSnapshot
from participants.simulation.engine import SimConfig, simulate
from participants.simulation.faults import FaultSpecError, parse_faults
from programs.actors import Actor
from programs.models import OpsException
from programs.services import program_activate, program_load_definition

START = datetime(2026, 2, 2, 0, 0, tzinfo=UTC)  # a Monday
OUTAGE = "outage=1@10h+6h,msgfail=0.1,late=0.2,dup=0.1,dropout=0.3"


def dpp(org, dpp_document):
    actor = Actor.system("test")
    version, _ = program_load_definition(organization=org, document=dpp_document, actor=actor)
    program = program_activate(program_id=version.program_id, actor=actor)
    load_templates(program=program, actor=actor)
    return program


@pytest.mark.parametrize(
    "spec, named",
    [
        ("outage=2@9h", "outage='2@9h'"),
        ("outage=1@10h+2h;x", "outage='x'"),
        ("slow=1.5", "slow='1.5'"),
        ("msgfail=lots", "msgfail='lots'"),
        ("bogus=1", "'bogus'"),
        ("late", "'late'"),
    ],
)
def test_a_bad_faults_spec_names_the_item(spec, named):
    # when
    with pytest.raises(FaultSpecError) as caught:
        parse_faults(spec)
    # then
    assert named in str(caught.value)


def test_a_faults_spec_round_trips():
    # given
    faults = parse_faults("outage=1@10h+5h;3@0h+12h,slow=0.1,msgfail=0.04,late=0.1,dup=0.05")
    # then
    assert parse_faults(faults.describe()) == faults
    assert faults.partner_down(faults.outages[1].start)
    assert not faults.partner_down(faults.outages[0].start + faults.outages[0].length)


@pytest.mark.django_db
def test_the_command_refuses_bad_input_with_a_clear_error(program):
    # when / then
    with pytest.raises(CommandError, match="--faults: fault slow='2'"):
        call_command("simulate", program="dpp", participants=5, days=1, faults="slow=2")
    with pytest.raises(CommandError, match="no program with slug 'nope'"):
        call_command("simulate", program="nope", participants=5, days=1)


@pytest.mark.django_db(transaction=True)
def test_a_small_simulation_fills_the_queue_and_writes_a_report(org, dpp_document, tmp_path):
    # given
    program = dpp(org, dpp_document)
    out = StringIO()
    # when
    call_command(
        "simulate",
        program="dpp",
        participants=30,
        days=5,
        seed=3,
        faults=OUTAGE,
        start=START.isoformat(),
        report_dir=str(tmp_path),
        quiet=True,
        stdout=out,
    )
    # then: the queue saw SLA breaches and the partner outage
    kinds = set(OpsException.objects.filter(organization=org).values_list("kind", flat=True))
    assert "sla_breach" in kinds
    assert kinds & {"delivery_dead", "endpoint_down"}
    assert Enrollment.objects.filter(program=program).count() == 30
    # people worked the queue, and the daily snapshots were recorded
    assert OpsException.objects.filter(organization=org, state="resolved").exists()
    assert ProgramMetricsSnapshot.objects.filter(program=program).count() == 5
    # the summary table and the report
    text = out.getvalue()
    assert "strain index" in text and "automation rate" in text
    report = json.loads((tmp_path / "dpp-30x5-seed3-report.json").read_text())
    assert report["summary"]["participants"] == 30
    assert report["summary"]["exceptions_by_kind"]["sla_breach"] >= 1
    assert len(report["series"]["days"]) == 5
    for plot in ("exceptions", "automation", "backlog"):
        assert (tmp_path / f"dpp-30x5-seed3-{plot}.png").read_bytes()[:4] == b"\x89PNG"


BEHAVIOUR = (
    "enrollments",
    "exceptions_by_kind",
    "exceptions_resolved",
    "step_completions_automated",
    "step_completions_manual",
    "manual_interventions",
    "partner_events",
    "partner_events_late",
    "partner_events_duplicates",
    "messages",
)


@pytest.mark.django_db(transaction=True)
def test_the_same_seed_gives_the_same_run(org, other_org, dpp_document):
    # given: the same program in two organizations
    first_program = dpp(org, dpp_document)
    second_program = dpp(other_org, dpp_document)

    def run(program):
        config = SimConfig(
            program=program,
            participants=20,
            days=3,
            seed=11,
            faults=parse_faults(OUTAGE),
            start=START,
            progress=False,
        )
        return simulate(config).summary

    # when
    first = run(first_program)
    second = run(second_program)
    # then
    assert {k: first[k] for k in BEHAVIOUR} == {k: second[k] for k in BEHAVIOUR}
    assert first["enrollments"]["referred"] < 20  # the run went somewhere
