"""S4: the SSRF guard, at registration and again at send time."""
# ruff: noqa: F811 - pytest fixtures imported from webhook_helpers

from __future__ import annotations

import socket

import pytest
from django.test import override_settings

from integrations import dispatch
from integrations.models import Delivery, DeliveryState
from integrations.services.webhooks import WebhookEndpointInvalid, webhook_endpoint_create
from integrations.ssrf import UnsafeURLError, check_url
from integrations.tests.webhook_helpers import ACTOR, make_endpoint, sink, write_event  # noqa: F401

PUBLIC_IP = "93.184.216.34"

BLOCKED = [
    "https://127.0.0.1/hook",
    "https://127.5.6.7/hook",
    "https://localhost/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook",
    "https://172.16.3.4/hook",
    "https://192.168.1.10/hook",
    "https://100.64.0.1/hook",
    "https://100.127.255.254/hook",
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://[::1]/hook",
    "https://[fc00::1]/hook",
    "https://[fd12:3456::1]/hook",
    "https://[fe80::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://[::ffff:a9fe:a9fe]/hook",
    "https://[64:ff9b::a9fe:a9fe]/hook",
    "https://[2002:a9fe:a9fe::1]/hook",
    "https://2130706433/hook",
    "https://0177.0.0.1/hook",
    "https://0x7f.0.0.1/hook",
    "https://0x7f000001/hook",
    "https://127.1/hook",
    "https://017700000001/hook",
    "https://user:pass@example.com/hook",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "http://93.184.216.34/hook",  # plain http to a public host
    "https://internal.partner.test/hook",  # DNS answers a private address
    "https://mixed.partner.test/hook",  # one public, one private answer
    "https://metadata.partner.test/hook",  # DNS answers the metadata address
]

FAKE_DNS = {
    "internal.partner.test": ["10.1.2.3"],
    "mixed.partner.test": [PUBLIC_IP, "192.168.0.7"],
    "metadata.partner.test": ["169.254.169.254"],
    "public.partner.test": [PUBLIC_IP],
    "sink.partner.test": ["127.0.0.1"],
}


@pytest.fixture
def fake_dns(monkeypatch):
    """The far side of the DNS boundary: answers for *.partner.test names."""
    real = socket.getaddrinfo
    answers = {k: list(v) for k, v in FAKE_DNS.items()}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            result = []
            for address in answers[host]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
                result.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return result
        if isinstance(host, str) and host.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def production_rule():
    with override_settings(BATON_ALLOW_INSECURE_WEBHOOKS=False):
        yield


@pytest.mark.parametrize("url", BLOCKED)
def test_unsafe_urls_are_refused(url, fake_dns, production_rule):
    # when / then
    with pytest.raises(UnsafeURLError) as error:
        check_url(url)
    assert error.value.message  # a reason a user can read


@pytest.mark.parametrize("url", BLOCKED)
def test_unsafe_urls_are_refused_at_registration(url, db, org, fake_dns, production_rule):
    # when
    with pytest.raises(WebhookEndpointInvalid) as error:
        webhook_endpoint_create(organization=org, partner_name="P", url=url, actor=ACTOR)
    # then: the error names the field; nothing was stored
    assert error.value.errors[0][0] == "url"
    assert not org.webhook_endpoints.exists()


def test_public_https_urls_are_accepted(fake_dns, production_rule):
    # when
    target = check_url("https://public.partner.test:8443/hooks?x=1")
    literal = check_url(f"https://{PUBLIC_IP}/hook")
    # then
    assert target.addresses == (PUBLIC_IP,)
    assert (target.host, target.port) == ("public.partner.test", 8443)
    assert literal.addresses == (PUBLIC_IP,)


def test_loopback_http_only_with_the_development_setting(fake_dns):
    # given the development/test setting
    with override_settings(BATON_ALLOW_INSECURE_WEBHOOKS=True):
        assert check_url("http://127.0.0.1:8080/hook").addresses == ("127.0.0.1",)
        assert check_url("http://[::1]:8080/hook").addresses == ("::1",)
        # private networks stay refused even in development
        with pytest.raises(UnsafeURLError):
            check_url("http://10.0.0.1/hook")
        with pytest.raises(UnsafeURLError):
            check_url("http://93.184.216.34/hook")
    # and not in production
    with (
        override_settings(BATON_ALLOW_INSECURE_WEBHOOKS=False),
        pytest.raises(UnsafeURLError, match="loopback"),
    ):
        check_url("http://127.0.0.1:8080/hook")


def test_send_connects_to_the_checked_address_with_the_real_host_header(
    db, org, sink, fake_dns, django_capture_on_commit_callbacks
):
    # given: a name that only our fake DNS knows, pointing at the sink
    url = f"http://sink.partner.test:{sink.port}/hook"
    make_endpoint(org, url)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        write_event(org)
    # then: delivered to the checked IP, Host header carries the name
    assert len(sink.requests) == 1
    assert sink.requests[0].headers["host"] == f"sink.partner.test:{sink.port}"
    assert Delivery.objects.get().state == DeliveryState.DELIVERED


def test_dns_rebinding_to_a_private_address_is_blocked_at_send_time(
    db, org, sink, fake_dns, django_capture_on_commit_callbacks
):
    # given: registered while the name resolved to an allowed address
    make_endpoint(org, f"http://sink.partner.test:{sink.port}/hook")
    # when: the name now answers the metadata address
    fake_dns["sink.partner.test"] = ["169.254.169.254"]
    with django_capture_on_commit_callbacks(execute=True):
        write_event(org)
    # then: nothing was sent; the attempt says why
    delivery = Delivery.objects.get()
    assert sink.requests == []
    assert delivery.state == DeliveryState.RETRYING
    attempt = delivery.attempts.get()
    assert attempt.error_class == "unsafe_url"
    assert "link-local" in delivery.last_error


def test_production_rule_blocks_loopback_at_send_time(
    db, org, sink, django_capture_on_commit_callbacks
):
    # given: an endpoint registered under the development setting
    make_endpoint(org, sink.url())
    event = write_event(org)
    dispatch.fanout([event.pk])
    # when: the production rule is in force at send time
    with override_settings(BATON_ALLOW_INSECURE_WEBHOOKS=False):
        dispatch.drain()
    # then
    assert sink.requests == []
    assert Delivery.objects.get().attempts.get().error_class == "unsafe_url"


def test_redirect_to_an_internal_host_is_not_followed(
    db, org, sink, django_capture_on_commit_callbacks
):
    # given: the partner answers 302 to the metadata address
    make_endpoint(org, sink.url())
    sink.script("redirect")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        write_event(org)
    # then: one request, counted as a failure, nothing followed
    delivery = Delivery.objects.get()
    assert len(sink.requests) == 1
    assert delivery.state == DeliveryState.RETRYING
    assert delivery.attempts.get().error_class == "redirect"
    assert delivery.attempts.get().status_code == 302
