"""R9: N coordinators claim the next exception at once; nobody gets the same item."""

import threading

import pytest
from django.db import connection

from programs.models import AuditEvent, OpsException
from programs.services import exception_claim_next, exception_raise
from programs.tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_claim_next_never_double_claims(org):
    # given: 12 open items and 8 coordinators pressing "claim next" at the same moment, 3 times
    for i in range(12):
        exception_raise(organization=org, kind="manual", title=f"item {i}", dedup_key=f"k{i}")
    users = []
    for i in range(8):
        user = UserFactory(username=f"coord{i}")
        MembershipFactory(user=user, organization=org, role="coordinator")
        users.append(user)
    barrier = threading.Barrier(len(users))
    claimed: list[tuple[str, int | None]] = []
    errors: list[BaseException] = []

    def worker(user):
        try:
            for _ in range(3):
                barrier.wait()
                item = exception_claim_next(user=user, organization_ids={org.pk})
                claimed.append((user.username, item.pk if item else None))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=worker, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # then
    assert not errors, errors
    got = [pk for _, pk in claimed if pk is not None]
    assert len(got) == 12, "every item was handed out"
    assert len(set(got)) == len(got), "no item was handed to two coordinators"
    assert sum(1 for _, pk in claimed if pk is None) == 24 - 12
    assert OpsException.objects.filter(state="claimed").count() == 12
    assert AuditEvent.objects.filter(action="exception.claim").count() == 12
    owners = dict(OpsException.objects.values_list("pk", "assignee__username"))
    for username, pk in claimed:
        if pk is not None:
            assert owners[pk] == username
