"""On PostgreSQL the statements every partner event runs are prepared once
per connection and then reused (settings: DB_PREPARED_STATEMENTS, on by
default). Django turns psycopg's automatic preparing off unless the settings
ask for it; planning cost more than executing for the event path's reads, so
a setting that silently stops applying costs the partner API about a fifth
of its throughput (docs/performance.md, "Prepared statements")."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from participants.services import enrollment_open, event_ingest, participant_upsert
from participants.tests.conftest import SYSTEM

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="prepared statements: PostgreSQL only"
    ),
]


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_event_path_is_prepared_after_a_few_events(org, program):
    start = timezone.now() - timedelta(hours=1)
    for n in range(8):
        participant, _ = participant_upsert(organization=org, external_ref=f"P-{n}", actor=SYSTEM)
        enrollment_open(participant=participant, program=program, actor=SYSTEM)
        event_ingest(
            organization=org,
            event_id=f"e{n}",
            event_type="device.synced",  # expected by a later stage: deferred
            external_ref=f"P-{n}",
            occurred_at=start + timedelta(minutes=n),
            data={},
            actor=SYSTEM,
        )

    prepared = _prepared_statements()

    enrollment_reads = [
        s for s in prepared if '"participants_enrollment" e' in s and "FOR UPDATE OF e" in s
    ]
    assert enrollment_reads, prepared
    # one reference is looked up by equality: the unique index answers it
    # whatever the table's statistics say
    assert any('p."external_ref" = $' in s for s in enrollment_reads)
    assert any(s.startswith('INSERT INTO "participants_participantevent"') for s in prepared)
    assert any('FROM "participants_stepinstance"' in s for s in prepared)
