"""Message templates: drafts, publishing (immutable from then on), new versions."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from messaging.models import MessageTemplate
from messaging.rendering import TemplateVariableError, validate_template
from programs.actors import as_actor
from programs.services import audit_record


def template_create(
    *,
    program,
    key: str,
    channel: str,
    body: str,
    actor,
    locale: str = "en",
    subject: str = "",
    links: dict | None = None,
    complete_on: str = "delivered",
    expires_after=None,
    publish: bool = False,
) -> MessageTemplate:
    """Create the next version (a draft, or published with `publish=True`).

    Validation names every unknown or disallowed placeholder (ValidationError
    keyed by field). Audited as `message_template.created` (and `.published`).
    """
    actor = as_actor(actor)
    try:
        validate_template(subject=subject, body=body, links=links)
    except TemplateVariableError as exc:
        raise ValidationError(exc.by_field) from exc
    with transaction.atomic():
        latest = MessageTemplate.objects.filter(
            program=program, key=key, channel=channel, locale=locale
        ).aggregate(v=Max("version"))["v"]
        template = MessageTemplate(
            organization_id=program.organization_id,
            program=program,
            key=key,
            channel=channel,
            locale=locale,
            version=(latest or 0) + 1,
            subject=subject,
            body=body,
            links=links or {},
            complete_on=complete_on,
            expires_after=expires_after,
            created_by=actor.label[:200],
        )
        template.full_clean()
        template.save()
        audit_record(
            actor=actor,
            action="message_template.created",
            target=template,
            metadata={
                "key": key,
                "channel": channel,
                "locale": locale,
                "version": template.version,
            },
        )
        if publish:
            template_publish(template_id=template.pk, actor=actor)
            template.refresh_from_db()
    return template


def template_publish(*, template_id: int, actor) -> MessageTemplate:
    """Publish a draft: from now on it is immutable and new messages use it.
    Audited as `message_template.published`."""
    actor = as_actor(actor)
    with transaction.atomic():
        template = MessageTemplate.objects.select_for_update().get(pk=template_id)
        if template.is_published:
            raise ValueError(f"template {template} is already published")
        template.published_at = timezone.now()
        template.save()
        audit_record(
            actor=actor,
            action="message_template.published",
            target=template,
            to_state="published",
            metadata={"key": template.key, "version": template.version},
        )
    return template


def template_new_version(*, template_id: int, actor) -> MessageTemplate:
    """Copy a template into the next draft version (the way to change a published one)."""
    source = MessageTemplate.objects.get(pk=template_id)
    return template_create(
        program=source.program,
        key=source.key,
        channel=source.channel,
        locale=source.locale,
        subject=source.subject,
        body=source.body,
        links=source.links,
        complete_on=source.complete_on,
        expires_after=source.expires_after,
        actor=actor,
    )
