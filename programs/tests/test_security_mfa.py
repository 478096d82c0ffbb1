"""Two-factor authentication: enrollment, the code step, recovery codes, and
where it is required."""

import re

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from programs.models import AuditEvent
from programs.security.services import mfa_totp_begin
from programs.tests.factories import TEST_PASSWORD


def code_for(device):
    value = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{value:06d}"


def enrolled(user):
    device = mfa_totp_begin(user=user)
    device.confirmed = True
    device.save()
    return device


def rows(action):
    return list(AuditEvent.objects.filter(action=action))


@pytest.fixture
def strict_org(org):
    org.require_mfa = True
    org.save()
    return org


@pytest.mark.django_db
def test_member_of_an_mfa_organization_must_enroll_before_anything_else(
    client, strict_org, coordinator
):
    # given: signed in with a password only
    client.force_login(coordinator)
    # when
    response = client.get("/console/queue/mine/")
    admin = client.get("/admin/")
    # then
    assert response.status_code == 302
    assert response["Location"].startswith("/security/mfa/setup/?next=")
    assert admin["Location"].startswith("/security/mfa/setup/")


@pytest.mark.django_db
def test_guided_enrollment_turns_mfa_on_and_shows_recovery_codes_once(
    client, strict_org, coordinator
):
    # given
    client.force_login(coordinator)
    page = client.get("/security/mfa/setup/")
    assert page.status_code == 200
    assert b"<svg" in page.content
    device = TOTPDevice.objects.get(user=coordinator, confirmed=False)
    # when: a wrong code, then the right one
    wrong = client.post(
        "/security/mfa/setup/",
        {"otp_token": "000000" if code_for(device) != "000000" else "111111"},
    )
    assert b"did not match" in wrong.content
    device.refresh_from_db()
    device.throttle_reset()  # django-otp backs off after a wrong code
    done = client.post("/security/mfa/setup/", {"otp_token": code_for(device)})
    # then
    assert done.status_code == 200
    codes = re.findall(rb"<li><code>([a-z0-9]+)</code></li>", done.content)
    assert len(codes) == 10
    assert client.get("/console/queue/mine/").status_code == 200  # verified in this session
    assert len(rows("auth.mfa_enrolled")) == 1
    assert len(rows("auth.mfa_recovery_codes_issued")) == 1
    assert len(rows("auth.mfa_failed")) == 1


@pytest.mark.django_db
def test_user_with_an_authenticator_is_signed_in_only_after_the_code(client, coordinator):
    # given
    device = enrolled(coordinator)
    # when: the password step
    step1 = client.post("/login/", {"username": coordinator.username, "password": TEST_PASSWORD})
    # then: not signed in yet
    assert step1["Location"].startswith("/login/verify/")
    assert "_auth_user_id" not in client.session
    assert client.get("/console/queue/mine/")["Location"].startswith("/login/")
    assert not rows("auth.login")
    # when: a wrong code
    bad = client.post("/login/verify/", {"otp_token": "12345"})
    assert b"not valid" in bad.content
    assert len(rows("auth.mfa_failed")) == 1
    # when: the right code
    device.refresh_from_db()
    device.throttle_reset()
    ok = client.post("/login/verify/", {"otp_token": code_for(device)})
    # then
    assert ok.status_code == 302
    assert ok["Location"] == "/console/"
    assert client.get("/console/queue/mine/").status_code == 200
    [login] = rows("auth.login")
    assert login.metadata["mfa"] == "totp"
    [verified] = rows("auth.mfa_verified")
    assert verified.metadata["method"] == "totp"


@pytest.mark.django_db
def test_recovery_code_signs_in_once_only(client, coordinator):
    # given
    enrolled(coordinator)
    client.force_login(coordinator)  # unverified session, to issue codes via the service
    from programs.security.request_meta import request_meta
    from programs.security.services import mfa_recovery_codes_regenerate

    codes = mfa_recovery_codes_regenerate(user=coordinator, actor=coordinator, meta=request_meta())
    client.logout()
    # when
    client.post("/login/", {"username": coordinator.username, "password": TEST_PASSWORD})
    first = client.post("/login/verify/", {"otp_token": codes[0]})
    # then
    assert first["Location"] == "/console/"
    assert rows("auth.mfa_verified")[0].metadata == {
        "method": "recovery_code",
        "recovery_codes_left": 9,
    }
    assert not StaticToken.objects.filter(token=codes[0]).exists()
    # when: the same code again
    client.post("/logout/")
    client.post("/login/", {"username": coordinator.username, "password": TEST_PASSWORD})
    again = client.post("/login/verify/", {"otp_token": codes[0]})
    # then
    assert again.status_code == 200
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_too_many_wrong_codes_send_the_user_back_to_the_password(client, coordinator):
    enrolled(coordinator)
    client.post("/login/", {"username": coordinator.username, "password": TEST_PASSWORD})
    for _ in range(5):
        response = client.post("/login/verify/", {"otp_token": "99999999"})
    assert response["Location"] == "/login/"
    assert client.get("/login/verify/")["Location"] == "/login/"


@pytest.mark.django_db
def test_superusers_need_mfa_when_the_production_rule_is_on(client, admin_user, settings):
    # given
    settings.BATON_MFA_REQUIRED_FOR_SUPERUSERS = True
    client.force_login(admin_user)
    # then
    assert client.get("/admin/")["Location"].startswith("/security/mfa/setup/")
    # and with the rule off (development), a superuser without a device gets in
    settings.BATON_MFA_REQUIRED_FOR_SUPERUSERS = False
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_members_of_organizations_without_the_setting_are_not_asked(client, coordinator):
    client.force_login(coordinator)
    assert client.get("/console/queue/mine/").status_code == 200


@pytest.mark.django_db
def test_regenerating_recovery_codes_needs_a_verified_session_and_is_audited(client, coordinator):
    # given: an unverified session
    enrolled(coordinator)
    client.force_login(coordinator)
    # when
    refused = client.post("/security/mfa/recovery-codes/")
    # then: the MFA gate sends them to the code step first
    assert refused["Location"].startswith("/login/verify/")
    assert not rows("auth.mfa_recovery_codes_issued")
