from functools import wraps

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect


class BatonAdminSite(admin.AdminSite):
    site_header = "Baton operations console"
    site_title = "Baton operations console"
    index_title = "Configuration and raw data"

    def admin_view(self, view, cacheable=False):
        """Every admin view, with posted action selections checked first.

        Django's changelist runs an action on `pk__in=<the posted ids>` as
        they come: an id that is no id ('abc', '²', a NUL character) failed there,
        a 500, on every model's list (Django's and third-party admins'
        included). Such a post now gets a warning and the list again, with
        nothing changed.
        """
        model_admin = getattr(view, "__self__", None)
        if not isinstance(model_admin, admin.ModelAdmin):
            return super().admin_view(view, cacheable)

        @wraps(view)
        def checked_view(request, *args, **kwargs):
            if request.method == "POST" and not _readable_ids(model_admin.model, request):
                messages.warning(
                    request,
                    "Items are selected by their ids; the ones posted are not ids. "
                    "No items have been changed.",
                )
                return HttpResponseRedirect(request.get_full_path())
            return view(request, *args, **kwargs)

        return super().admin_view(checked_view, cacheable)


def _readable_ids(model, request) -> bool:
    pk = model._meta.pk
    try:
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            if "\x00" in value:  # no text key holds one (PostgreSQL stores none)
                return False
            pk.to_python(value)
    except ValidationError:
        return False
    return True
