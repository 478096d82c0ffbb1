"""`{% idle_logoff_script %}`: the idle warning script, for signed-in pages."""

from django import template
from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def idle_logoff_script(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    return format_html(
        '<script src="{}" defer data-status-url="{}" data-login-url="{}" '
        'data-idle-seconds="{}" data-warn-seconds="60"></script>',
        static("security/idle.js"),
        reverse("security:session"),
        settings.LOGIN_URL,
        int(settings.SESSION_IDLE_TIMEOUT.total_seconds()),
    )
