"""Automatic logoff: idle timeout and absolute lifetime (time-machine)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from programs.models import AuditEvent
from programs.tests.factories import TEST_PASSWORD

PAGE = "/console/queue/mine/"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sign_in(client, user):
    response = client.post("/login/", {"username": user.username, "password": TEST_PASSWORD})
    assert response.status_code == 302


@pytest.mark.django_db
def test_a_page_request_after_the_idle_time_redirects_to_login(client, coordinator):
    with time_machine.travel(START, tick=False) as clock:
        # given
        sign_in(client, coordinator)
        assert client.get(PAGE).status_code == 200
        # when: 15 minutes and a second without a request
        clock.shift(timedelta(minutes=15, seconds=1))
        response = client.get(PAGE)
        # then
        assert response.status_code == 302
        assert response["Location"] == "/login/?next=%2Fconsole%2Fqueue%2Fmine%2F&expired=idle"
        assert "_auth_user_id" not in client.session
        [row] = AuditEvent.objects.filter(action="auth.session_expired")
        assert row.actor_id == str(coordinator.pk)
        assert row.reason == "idle timeout"
        assert not AuditEvent.objects.filter(action="auth.logout").exists()
        login_page = client.get(response["Location"])
        assert b"signed out after 15 minutes" in login_page.content


@pytest.mark.django_db
def test_activity_keeps_the_session_but_the_absolute_lifetime_still_ends_it(client, coordinator):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, coordinator)
        # when: a request every 14 minutes for 11h50
        for _ in range(51):
            clock.shift(timedelta(minutes=14))
            assert client.get(PAGE).status_code == 200
        # then: at 12 hours the session ends even though the user is active
        clock.shift(timedelta(minutes=14))
        response = client.get(PAGE)
        assert response.status_code == 302
        assert response["Location"].endswith("expired=absolute")
        assert AuditEvent.objects.get(action="auth.session_expired").reason == "absolute timeout"


@pytest.mark.django_db
def test_the_status_poll_does_not_count_as_activity_but_stay_signed_in_does(client, coordinator):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, coordinator)
        clock.shift(timedelta(minutes=14))
        # when: idle.js polls
        status = client.get("/security/session/").json()
        # then
        assert status["idle_seconds"] == 60
        clock.shift(timedelta(seconds=30))
        # when: the person presses "Stay signed in"
        kept = client.post("/security/session/").json()
        assert kept["idle_seconds"] == 900
        clock.shift(timedelta(minutes=14))
        assert client.get(PAGE).status_code == 200
        # and polling alone lets it expire
        clock.shift(timedelta(minutes=15, seconds=5))
        expired = client.get("/security/session/")
        assert expired.status_code == 401
        assert expired.json()["login_url"] == "/login/"


@pytest.mark.django_db
def test_idle_time_is_configurable(client, coordinator, settings):
    settings.SESSION_IDLE_TIMEOUT = timedelta(minutes=5)
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, coordinator)
        clock.shift(timedelta(minutes=5, seconds=1))
        assert client.get(PAGE).status_code == 302


@pytest.mark.django_db
def test_signed_in_pages_carry_the_idle_warning_script_and_are_not_cached(client, coordinator):
    client.force_login(coordinator)
    response = client.get(PAGE)
    assert b'src="/static/security/idle.js"' in response.content
    assert b'data-idle-seconds="900"' in response.content
    assert response["Cache-Control"] == "no-store"
