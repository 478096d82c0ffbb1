"""R10: Schemathesis against the live OpenAPI schema, all checks, with a valid key.

Runs in-process against the WSGI app (no server), bounded by `max_examples`
so the whole file takes about a minute. Domain outcomes that a schema-valid
request can legitimately get (404 for an id or program slug that does not
exist, 409 for a transition the state does not allow, 422 for PHI or a
service rule) count as accepted answers for `positive_data_acceptance`.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from integrations.tests.api_fixtures import make_key

CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
            },
        }
    }
)


# Fetching the schema needs no database (the schema view is public).
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application(), config=CONFIG)


@pytest.fixture
def bearer(org, program, settings):
    # Called straight through the WSGI handler, whose request signals would
    # close the test's connection mid-transaction (Django's test Client
    # disconnects them the same way).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_client": "100000/min"},
    }
    cache.clear()
    _client, raw = make_key(org, name="schemathesis")
    yield {"Authorization": f"Bearer {raw}"}
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, bearer):
    case.call_and_validate(headers=bearer)
