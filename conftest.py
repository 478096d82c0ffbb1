"""Project-wide pytest fixtures and markers.

`@pytest.mark.postgres` tests need real row locks (select_for_update,
skip_locked, concurrent transitions); on SQLite they skip with a reason.
"""

from pathlib import Path

import pytest
from django.db import connection

from programs.tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    UserFactory,
)

DPP_PATH = Path(__file__).parent / "programs" / "fixtures" / "dpp.yaml"

# Partner API fixtures (keys, an HTTP client that sends them): write_key, partner.
pytest_plugins = ["integrations.tests.api_fixtures"]


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if engine.endswith("postgresql"):
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL row locks; SQLite ignores select_for_update "
        "(run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton)"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture
def org(db):
    return OrganizationFactory(slug="acme", name="Acme Health")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(slug="globex", name="Globex Care")


@pytest.fixture
def dpp_document():
    import yaml

    return yaml.safe_load(DPP_PATH.read_text())


@pytest.fixture
def program(org, dpp_document):
    """The DPP program in `org`, published (v1) and active."""
    from programs.actors import Actor
    from programs.services import program_activate, program_load_definition

    version, _ = program_load_definition(
        organization=org, document=dpp_document, actor=Actor.system("test")
    )
    return program_activate(program_id=version.program_id, actor=Actor.system("test"))


def _member(org, role):
    user = UserFactory(username=f"{role}-{org.slug}")
    MembershipFactory(user=user, organization=org, role=role)
    return user


@pytest.fixture
def coordinator(org):
    return _member(org, "coordinator")


@pytest.fixture
def lead(org):
    return _member(org, "lead")


@pytest.fixture
def auditor(org):
    return _member(org, "auditor")


@pytest.fixture
def other_coordinator(other_org):
    return _member(other_org, "coordinator")
