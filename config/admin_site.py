from functools import wraps

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ERROR_FLAG
from django.http import HttpResponseRedirect

from programs.lookups import is_key_of


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
            if _date_hierarchy_out_of_range(request.GET):
                # Django reads ?created_at__year=<20 digits> with datetime(),
                # which raises OverflowError, not the ValueError it turns
                # into its "invalid filter" page: the same page here.
                return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            pk = model_admin.model._meta.pk
            if request.method == "POST" and not all(is_key_of(pk, v) for v in selected):
                messages.warning(
                    request,
                    "Items are selected by their ids; the ones posted are not ids. "
                    "No items have been changed.",
                )
                return HttpResponseRedirect(request.get_full_path())
            return view(request, *args, **kwargs)

        return super().admin_view(checked_view, cacheable)


def _date_hierarchy_out_of_range(params) -> bool:
    """A date-hierarchy parameter (`<field>__year`, `__month`, `__day`) that
    is no number a date can hold."""
    for name, value in params.items():
        if name.endswith(("__year", "__month", "__day")) and not (
            value.isascii() and value.isdecimal() and len(value) <= 4
        ):
            return True
    return False
