"""Access security in a real browser, with the CSP enforced: sign-in with a
second factor, every console and admin page without a CSP violation, Swagger
UI, and the idle-logoff warning.

Run: .venv/bin/python -m pytest tests/browser/test_security_browser.py -q -p no:randomly
"""

from datetime import timedelta

import pytest
from django_otp.oath import totp

from participants.services import enrollment_open, participant_upsert
from programs.actors import Actor
from programs.security.services import mfa_totp_begin
from programs.services import exception_raise
from programs.tests.factories import TEST_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records every CSP violation the page reports (init scripts are not subject to the CSP).
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__csp.push(
    e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + e.sourceFile + ':' + e.lineNumber
  );
});
"""


def violations(page):
    return page.evaluate("window.__csp")


def watched_page(new_page):
    page = new_page()
    page.add_init_script(WATCH_CSP)
    return page


def code_for(device):
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def test_mfa_sign_in_and_every_console_and_admin_page_run_without_csp_violations(
    live_server, new_page, shot, org, program, lead
):
    # given: a lead with an authenticator, and some work to look at
    system = Actor.system("browser-test")
    participant, _ = participant_upsert(organization=org, external_ref="P-2001", actor=system)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=system)
    item, _ = exception_raise(
        organization=org, kind="manual", title="Look", dedup_key="b1", actor=system
    )
    device = mfa_totp_begin(user=lead)
    device.confirmed = True
    device.save()
    page = watched_page(new_page)
    # when: password, then code
    page.goto(f"{live_server.url}/login/?next=/console/queue/open/")
    page.fill("input[name=username]", lead.username)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/verify/**")
    shot(page, "security_verify")
    page.fill("input[name=otp_token]", code_for(device))
    page.click("button[type=submit]")
    page.wait_for_url("**/console/queue/open/")
    # then: each page renders and reports no CSP violation
    pages = [
        "/console/queue/open/",
        f"/console/items/{item.pk}/",
        f"/console/enrollments/{enrollment.pk}/",
        "/console/programs/",
        f"/console/programs/{program.pk}/health/",
        "/security/mfa/",
        "/security/password/",
        "/admin/",
        "/admin/programs/program/",
        f"/admin/programs/program/{program.pk}/change/",
        "/admin/programs/opsexception/",
        f"/admin/programs/opsexception/{item.pk}/change/",
    ]
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        assert response.status < 400, path
        assert response.headers.get("content-security-policy"), path
        assert violations(page) == [], path
    shot(page, "security_admin_change_form")


def test_guided_enrollment_in_the_browser(live_server, new_page, shot, org, coordinator):
    # given: the organization requires MFA
    org.require_mfa = True
    org.save()
    page = watched_page(new_page)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", coordinator.username)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    # then: sent to enrollment with a QR code
    page.wait_for_url("**/security/mfa/setup/**")
    assert page.locator(".qr svg").count() == 1
    shot(page, "security_mfa_setup")
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=coordinator, confirmed=False)
    page.fill("input[name=otp_token]", code_for(device))
    page.click("main button[type=submit]")
    assert page.locator(".codes li").count() == 10
    shot(page, "security_recovery_codes")
    page.click("text=I have saved my codes")
    page.wait_for_url("**/console/**")
    assert violations(page) == []


def test_idle_warning_appears_before_logoff_and_stay_signed_in_dismisses_it(
    live_server, new_page, shot, settings, coordinator
):
    # given: a 65-second idle timeout, so the 60-second warning comes quickly
    settings.SESSION_IDLE_TIMEOUT = timedelta(seconds=65)
    page = watched_page(new_page)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", coordinator.username)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/**")
    # when: the person does nothing
    warning = page.locator("#idle-warning")
    warning.wait_for(state="visible", timeout=20_000)
    assert "signed out in" in warning.inner_text()
    shot(page, "security_idle_warning")
    # when: they press "Stay signed in"
    page.click("#idle-stay")
    # then
    warning.wait_for(state="hidden", timeout=5_000)
    assert violations(page) == []


def test_swagger_ui_renders_under_its_scoped_policy(live_server, new_page):
    page = watched_page(new_page)
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_timeout(3000)
    assert violations(page) == []
    page.wait_for_selector(".swagger-ui .information-container", timeout=20_000)
