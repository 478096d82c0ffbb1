"""Settings are parsed from the environment; production refuses to start
without real secrets, naming the missing variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "-Zx9!q" * 8


def load_settings(**env):
    """Import config.settings in a fresh interpreter with exactly `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "config.settings"
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "db = s.DATABASES['default']; "
        "print(json.dumps({'engine': db['ENGINE'], 'options': {k: str(v) for k, v in "
        "db.get('OPTIONS', {}).items()}, 'debug': s.DEBUG, 'hsts': getattr(s, "
        "'SECURE_HSTS_SECONDS', 0), 'ssl': getattr(s, 'SECURE_SSL_REDIRECT', False), "
        "'tz': s.TIME_ZONE, 'q': s.Q_CLUSTER, 'conn_max_age': db.get('CONN_MAX_AGE')}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def test_sqlite_default_uses_wal_immediate_and_busy_timeout():
    # when
    result = load_settings(DJANGO_ENV="development")
    # then
    assert result.returncode == 0, result.stderr
    assert '"engine": "django.db.backends.sqlite3"' in result.stdout
    assert "journal_mode=WAL" in result.stdout
    assert '"transaction_mode": "IMMEDIATE"' in result.stdout
    assert "busy_timeout" in result.stdout
    assert '"tz": "UTC"' in result.stdout


def test_postgres_url_uses_psycopg_pool_without_persistent_connections():
    result = load_settings(DATABASE_URL="postgres://postgres@127.0.0.1:5432/baton")
    assert result.returncode == 0, result.stderr
    assert '"engine": "django.db.backends.postgresql"' in result.stdout
    assert '"pool":' in result.stdout
    assert '"conn_max_age": 0' in result.stdout


def test_queue_retry_exceeds_timeout_and_attempts_are_bounded():
    import json

    result = load_settings()
    q = json.loads(result.stdout)["q"]
    assert q["retry"] > q["timeout"]
    assert q["max_attempts"] > 0
    assert q["catch_up"] is False
    assert q["orm"] == "default"


def test_redis_broker_switch():
    import json

    result = load_settings(Q_BROKER="redis", REDIS_URL="redis://127.0.0.1:6379/3")
    q = json.loads(result.stdout)["q"]
    assert q["redis"] == "redis://127.0.0.1:6379/3"
    assert "orm" not in q


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": GOOD_KEY}, "ALLOWED_HOSTS"),
        ({"SECRET_KEY": "short", "ALLOWED_HOSTS": "baton.example.com"}, "SECRET_KEY"),
        ({"SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
        (
            {"SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "b.example.com", "Q_BROKER": "kafka"},
            "Q_BROKER",
        ),
        (
            {"SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "b.example.com", "Q_RETRY": "10"},
            "Q_RETRY",
        ),
    ],
)
def test_production_refuses_to_start_and_names_the_variable(env, named):
    # when
    result = load_settings(DJANGO_ENV="production", **env)
    # then
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_production_turns_on_security_settings():
    import json

    result = load_settings(
        DJANGO_ENV="production", SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="baton.example.com"
    )
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed["debug"] is False
    assert parsed["hsts"] >= 31536000
    assert parsed["ssl"] is True


def test_unknown_environment_name_is_refused():
    result = load_settings(DJANGO_ENV="staging")
    assert result.returncode != 0
    assert "DJANGO_ENV" in result.stderr
