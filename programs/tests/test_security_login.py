"""Login throttling, lockout and its lifting, and the sign-in audit trail."""

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate
from django.test import override_settings

from programs.models import AuditEvent
from programs.tests.factories import TEST_PASSWORD, UserFactory

LIMIT = 3
BROWSER = {"HTTP_USER_AGENT": "Mozilla/5.0 (BatonTest)", "REMOTE_ADDR": "203.0.113.7"}


def _post_login(client, username, password, **extra):
    return client.post(
        "/login/", {"username": username, "password": password}, **{**BROWSER, **extra}
    )


def _actions(action):
    return list(AuditEvent.objects.filter(action=action))


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.mark.django_db
def test_password_login_signs_in_and_is_audited_once_with_ip_agent_and_request_id(
    client, coordinator
):
    # when
    response = _post_login(
        client, coordinator.username, TEST_PASSWORD, HTTP_X_REQUEST_ID="req-login-0001"
    )
    # then
    assert response.status_code == 302
    assert response["Location"] == "/console/"
    [row] = _actions("auth.login")
    assert row.actor_id == str(coordinator.pk)
    assert row.ip_address == "203.0.113.7"
    assert row.user_agent == "Mozilla/5.0 (BatonTest)"
    assert row.request_id == "req-login-0001"
    assert row.metadata["mfa"] == "none"


@pytest.mark.django_db
def test_failed_login_is_audited_once_without_the_password(client, coordinator):
    # when
    response = _post_login(client, coordinator.username, "wrong-password-123")
    # then
    assert response.status_code == 200
    assert b"do not match" in response.content
    [row] = _actions("auth.login_failed")
    assert row.actor_kind == "anonymous"
    assert row.actor_label == coordinator.username
    assert row.object_id == str(coordinator.pk)
    assert row.ip_address == "203.0.113.7"
    assert "wrong-password" not in str(row.metadata)


@pytest.mark.django_db
def test_a_username_longer_than_any_account_is_a_form_error_not_an_attempt(client):
    # when: 5,000 characters (axes used to fail recording it: a 500 on PostgreSQL)
    response = _post_login(client, "a" * 5000, "whatever-123")
    # then
    assert response.status_code == 200
    assert b"at most 150 characters" in response.content
    assert not AccessAttempt.objects.exists()


@pytest.mark.django_db
def test_user_is_locked_out_after_the_limit_then_an_admin_lifts_it(
    client, coordinator, admin_client
):
    # given: LIMIT wrong passwords
    for _ in range(LIMIT):
        _post_login(client, coordinator.username, "wrong-password-123")
    # when: even the right password is refused
    locked = _post_login(client, coordinator.username, TEST_PASSWORD)
    # then
    assert locked.status_code == 429
    assert b"Sign-in temporarily locked" in locked.content
    assert "_auth_user_id" not in client.session
    assert len(_actions("auth.locked_out")) == 1
    assert len(_actions("auth.login_failed")) == LIMIT + 1
    assert _actions("auth.login_failed")[0].metadata["locked_out"] is True

    # when: an admin lifts the lockout in the admin
    attempt_ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "lift_lockout", "_selected_action": attempt_ids},
    )
    # then
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    [lifted] = _actions("auth.lockout_lifted")
    assert lifted.metadata["username"] == coordinator.username
    assert lifted.actor_label == "admin"
    assert _post_login(client, coordinator.username, TEST_PASSWORD).status_code == 302


@pytest.mark.django_db
def test_one_ip_trying_many_usernames_is_locked_out(client, db):
    # given: failures spread over different usernames from one address
    for n in range(LIMIT):
        _post_login(client, f"nobody{n}", "wrong-password-123")
    victim = UserFactory(username="victim")
    # when
    response = _post_login(client, victim.username, TEST_PASSWORD)
    # then: the address is locked, another address is not
    assert response.status_code == 429
    other = _post_login(client, victim.username, TEST_PASSWORD, REMOTE_ADDR="198.51.100.9")
    assert other.status_code == 302


@pytest.mark.django_db
def test_in_process_authenticate_without_request_cannot_bypass_web_lockout(client, coordinator):
    # given: the user is locked out over HTTP
    for _ in range(LIMIT):
        _post_login(client, coordinator.username, "wrong-password-123")
    # when / then: the web login stays locked even though shell authenticate works
    assert authenticate(username=coordinator.username, password=TEST_PASSWORD) == coordinator
    assert _post_login(client, coordinator.username, TEST_PASSWORD).status_code == 429


@pytest.mark.django_db
def test_logout_is_audited_once(client, coordinator):
    # given
    _post_login(client, coordinator.username, TEST_PASSWORD)
    # when
    response = client.post("/logout/", **BROWSER)
    # then
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    [row] = _actions("auth.logout")
    assert row.actor_id == str(coordinator.pk)
    assert len(_actions("auth.login")) == 1


@pytest.mark.django_db
def test_admin_login_page_redirects_to_the_real_login(client):
    # when
    response = client.get("/admin/login/?next=/admin/programs/")
    # then
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/admin/programs/"
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_login_rejects_an_offsite_next(client, coordinator):
    response = client.post(
        "/login/?next=https://evil.example/",
        {"username": coordinator.username, "password": TEST_PASSWORD},
    )
    assert response["Location"] == "/console/"


@pytest.mark.django_db
def test_password_change_is_audited_once_and_common_passwords_are_refused(client, coordinator):
    # given
    client.force_login(coordinator)
    # when: a common password
    refused = client.post(
        "/security/password/",
        {
            "old_password": TEST_PASSWORD,
            "new_password1": "password1234",
            "new_password2": "password1234",
        },
    )
    # then
    assert refused.status_code == 200
    assert b"too common" in refused.content
    # when: a short one
    short = client.post(
        "/security/password/",
        {"old_password": TEST_PASSWORD, "new_password1": "Zq8!short", "new_password2": "Zq8!short"},
    )
    assert b"at least 12 characters" in short.content
    assert not _actions("auth.password_changed")
    # when: a good one
    ok = client.post(
        "/security/password/",
        {
            "old_password": TEST_PASSWORD,
            "new_password1": "violet-kettle-orbit-42",
            "new_password2": "violet-kettle-orbit-42",
        },
    )
    # then
    assert ok.status_code == 302
    [row] = _actions("auth.password_changed")
    assert row.actor_id == str(coordinator.pk)
    assert row.metadata["by_self"] is True


@pytest.mark.django_db
def test_creating_a_user_is_not_reported_as_a_password_change(db):
    UserFactory(username="newcomer")
    assert not _actions("auth.password_changed")


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
@pytest.mark.django_db
def test_lockout_audit_is_written_once_even_when_attempts_continue(client, coordinator):
    for _ in range(LIMIT + 3):
        _post_login(client, coordinator.username, "wrong-password-123")
    assert len(_actions("auth.locked_out")) == 1
