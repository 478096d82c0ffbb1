"""The messaging admin: connector secrets stay masked for read-only roles,
bad input is a form error, and changes and deletions are audited."""

import pytest
from django.urls import reverse

from messaging.models import ChannelConnector
from programs.models import AuditEvent
from programs.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _form(connector, **changes):
    return {
        "organization": connector.organization_id,
        "slug": connector.slug,
        "name": connector.name,
        "kind": connector.kind,
        "url": connector.url,
        "secret": connector.secret,
        "previous_secret": "",
        "channels": "[]",
        "enabled": "on",
        "is_default": "on",
        **changes,
    }


@pytest.mark.parametrize("role", ["coordinator", "auditor"])
def test_read_only_roles_see_the_connector_secret_masked(client, webhook_connector, role, request):
    # the secret signs vendor callbacks: shown in full, a reader could forge them
    client.force_login(request.getfixturevalue(role))

    page = client.get(
        reverse("admin:messaging_channelconnector_change", args=[webhook_connector.pk])
    )

    assert page.status_code == 200
    assert webhook_connector.secret not in page.content.decode()
    assert "whsec_…" in page.content.decode()


def test_channels_that_are_no_list_are_a_form_error(root, webhook_connector):
    # channels=5 was a 500 (TypeError), "sms" was read as s, m, s
    url = reverse("admin:messaging_channelconnector_change", args=[webhook_connector.pk])
    for channels in ("5", '"sms"'):
        response = root.post(url, _form(webhook_connector, channels=channels))
        assert response.status_code == 200
        assert "a list of channels" in response.content.decode()


def test_connector_changes_and_deletion_are_audited(root, webhook_connector):
    url = reverse("admin:messaging_channelconnector_change", args=[webhook_connector.pk])
    response = root.post(url, _form(webhook_connector, enabled=""))
    assert response.status_code == 302, response.content.decode()[:2000]
    changed = AuditEvent.objects.get(action="messaging.connector.changed")
    assert changed.metadata["changed"]["enabled"] == {"from": True, "to": False}

    root.post(
        reverse("admin:messaging_channelconnector_delete", args=[webhook_connector.pk]),
        {"post": "yes"},
    )

    assert not ChannelConnector.objects.exists()
    deleted = AuditEvent.objects.get(action="messaging.connector.deleted")
    assert deleted.actor_label == "root" and deleted.object_id == str(webhook_connector.pk)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("key: [unclosed", "is not valid YAML"),
        ("just a string", "must be a YAML list of templates"),
        ("- {key: x, channel: sms}", "needs body"),
    ],
)
def test_load_templates_explains_a_bad_file(program, tmp_path, content, message):
    # tracebacks before (YAMLError, TypeError, KeyError)
    from django.core.management import CommandError, call_command

    bad = tmp_path / "t.yaml"
    bad.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command(
            "load_templates",
            organization=program.organization.slug,
            program=program.slug,
            file=str(bad),
        )


def test_load_templates_publishes_all_or_nothing(program, tmp_path):
    from django.core.management import CommandError, call_command

    from messaging.models import MessageTemplate

    bad = tmp_path / "t.yaml"
    bad.write_text(
        "- {key: first_ok, channel: sms, body: 'Welcome to {{ program_name }}'}\n"
        "- {key: second_bad, channel: sms, body: 'Hi {{ first_name }}'}\n"
    )
    with pytest.raises(CommandError, match="none published"):
        call_command(
            "load_templates",
            organization=program.organization.slug,
            program=program.slug,
            file=str(bad),
        )
    assert not MessageTemplate.objects.filter(key="first_ok").exists()

    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "load_templates",
            organization=program.organization.slug,
            program=program.slug,
            file=str(tmp_path / "missing.yaml"),
        )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": "Invite-Me"}, "key", "lower-case letters"),
        ({"expires_after": __import__("datetime").timedelta(days=-1)}, "expires_after", "positive"),
        ({"body": "x" * 1601}, "body", "at most 1,600 characters for sms"),
    ],
)
def test_a_template_no_step_could_use_is_refused(program, changes, field, message):
    # all three were accepted: a key no definition can name, a negative
    # lifetime, a 200,000-character SMS
    from django.core.exceptions import ValidationError

    from messaging.services import template_create
    from programs.actors import Actor

    fields = {"key": "invite_me", "channel": "sms", "body": "Join {{ program_name }}", **changes}
    with pytest.raises(ValidationError) as info:
        template_create(program=program, actor=Actor.system("test"), **fields)
    assert message in " ".join(info.value.message_dict[field])


def test_an_empty_channels_field_means_every_channel(root, org):
    # NOT NULL constraint failed: a 500
    response = root.post(
        reverse("admin:messaging_channelconnector_add"),
        {"organization": org.pk, "slug": "c", "name": "Console", "kind": "console", "channels": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ChannelConnector.objects.get(slug="c").channels == []


def test_a_template_lifetime_beyond_ten_years_is_refused(program):
    # 999,999,999 days overflowed the database column: a 500 in the admin
    from datetime import timedelta

    from django.core.exceptions import ValidationError

    from messaging.services import template_create
    from programs.actors import Actor

    with pytest.raises(ValidationError) as info:
        template_create(
            program=program,
            actor=Actor.system("t"),
            key="k",
            channel="sms",
            body="Join {{ program_name }}",
            expires_after=timedelta(days=999_999_999),
        )
    assert "at most 10 years" in " ".join(info.value.message_dict["expires_after"])
