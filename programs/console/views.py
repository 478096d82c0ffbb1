"""The operations console: queues, item detail, actions, bulk actions.

Views read through programs.console.selectors and write only through the
programs.services exception services, so the console, the admin and the API
share one set of rules and one audit trail. Another organization's item is
a 404; an action the user's role does not allow is a 403; bad input comes
back as a message on the page, never a 500.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from programs.actors import Actor
from programs.console import selectors
from programs.console.access import WORK_ROLES, console_access
from programs.console.forms import (
    SNOOZE_CHOICES,
    SNOOZE_DELTAS,
    BulkForm,
    DismissForm,
    ReassignForm,
    ResolveForm,
    RetryForm,
    SnoozeForm,
    parse_ids,
    parse_number,
)
from programs.errors import BatonError
from programs.models import (
    ACTIVE_EXCEPTION_STATES,
    ExceptionState,
    Membership,
    OpsException,
    Severity,
)
from programs.registries import registry, retry_actions_for, subject_context_for
from programs.services import (
    exception_claim,
    exception_claim_next,
    exception_dismiss,
    exception_reassign,
    exception_release,
    exception_resolve,
    exception_retry,
    exception_snooze,
)
from programs.tenancy import scope_queryset

BULK_MAX = 500


def _safe_next(request, default):
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _item_url(pk: int, back: str) -> str:
    """An item's page, keeping `?next=` (where its back link and closing
    actions lead) when there is one."""
    url = reverse("console:item", args=[pk])
    return f"{url}?{urlencode({'next': back})}" if back else url


def _form_errors(form) -> str:
    parts = []
    for name, errors in form.errors.items():
        label = "" if name == "__all__" else f"{form.fields[name].label or name}: "
        parts.append(label + "; ".join(str(e) for e in errors))
    return " ".join(parts)


def _candidates(organization_ids):
    """People who can be given items in these organizations (None: everyone)."""
    qs = Membership.objects.filter(role__in=WORK_ROLES)
    if organization_ids is not None:
        qs = qs.filter(organization_id__in=organization_ids)
    user_ids = qs.values("user_id")
    return list(
        get_user_model().objects.filter(pk__in=user_ids, is_active=True).order_by("username")
    )


@login_required
def home(request):
    return redirect("console:queue", tab="mine")


@login_required
def queue(request, tab):
    if tab not in selectors.TABS:
        return redirect("console:queue", tab="mine")
    access = console_access(request)
    filters = selectors.QueueFilters.from_query(request.GET)
    try:
        page = max(1, min(int(request.GET.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    items, has_next = selectors.queue_page(tab, request.user, filters, page)
    facets = selectors.facet_counts(tab, request.user, filters)
    if not items and page > 1:
        # Past the end (its last items were closed meanwhile, or an old
        # link): the last page that has items, with the same filters.
        total = facets["total"]
        last = 1 if total.capped else max(1, -(-total.value // selectors.PAGE_SIZE))
        query = request.GET.copy()
        query["page"] = str(last)
        return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
    kinds = sorted(registry.exception_kinds.values(), key=lambda k: k.label)
    context = {
        "tab": tab,
        "tab_label": selectors.TABS[tab],
        "tabs": selectors.TABS,
        "counts": selectors.tab_counts(request.user),
        "items": items,
        "page": page,
        "has_next": has_next,
        "filters": filters,
        "facets": facets,
        "kind_options": [(k.key, k.label, facets["kind"].get(k.key, 0)) for k in kinds],
        "severity_options": [
            (value, label, facets["severity"][value]) for value, label in reversed(Severity.choices)
        ],
        "age_options": [
            (key, label, facets["age"][key])
            for key, (label, _low, _high) in selectors.AGE_BUCKETS.items()
        ],
        "due_options": [
            (key, label, facets["due"][key]) for key, label in selectors.DUE_CHOICES.items()
        ],
        "programs": selectors.programs_for(request.user),
        "can_work": access.can_work_anywhere,
        "can_bulk": access.is_lead_anywhere,
        "filter_query": _urlencode(filters.as_query()),
        "next_url": request.get_full_path(),
        "snooze_choices": [(k, k) for k in SNOOZE_DELTAS],
        "bulk_candidates": _candidates(access.lead_org_ids) if access.is_lead_anywhere else [],
    }
    for error in filters.errors:
        messages.warning(request, f"Filter: {error}.")
    return render(request, "console/queue.html", context)


def _urlencode(data: dict) -> str:
    q = QueryDict(mutable=True)
    for key, value in data.items():
        q[key] = value
    return q.urlencode()


def _item_or_404(request, pk) -> OpsException:
    qs = scope_queryset(OpsException.objects.select_related("program", "assignee"), request.user)
    return get_object_or_404(qs, pk=pk)


@login_required
def item_detail(request, pk):
    item = _item_or_404(request, pk)
    access = console_access(request)
    can_work = access.can_work(item.organization_id)
    can_lead = access.can_lead(item.organization_id)
    available = {t.name for t in item.get_available_state_transitions()} if can_work else set()
    try:
        subject = subject_context_for(item)
    except Exception as exc:  # a contributor's bug must not take the item page down
        subject = None
        messages.warning(request, f"Subject context unavailable ({exc.__class__.__name__}).")
    context = {
        "item": item,
        "kind": registry.exception_kinds.get(item.kind),
        "history": selectors.item_history(item),
        "subject": subject,
        "can_work": can_work,
        "can_lead": can_lead,
        "available": available,
        "is_mine": item.assignee_id == request.user.pk,
        "retry_actions": retry_actions_for(item.kind) if can_work and item.is_active else [],
        "reassign_candidates": (
            _candidates({item.organization_id})
            if can_lead and item.state in (ExceptionState.OPEN, ExceptionState.CLAIMED)
            else []
        ),
        "resolve_form": ResolveForm(),
        "dismiss_form": DismissForm(),
        "snooze_form": SnoozeForm(),
        "context_items": sorted((item.context or {}).items()),
        "back_url": _safe_next(request, reverse("console:queue", args=["mine"])),
    }
    return render(request, "console/item.html", context)


@login_required
@require_POST
def item_action(request, pk, action):
    """Run one action on one item through its service, then go back."""
    item = _item_or_404(request, pk)
    access = console_access(request)
    if action == "reassign":
        access.require_lead(item.organization_id)
    else:
        access.require_work(item.organization_id)
    actor = Actor.for_user(request.user)
    # Back to the item (still carrying the queue the user came from), or,
    # once the item is closed or snoozed, to that queue.
    detail_url = _item_url(item.pk, _safe_next(request, ""))
    after_close = _safe_next(request, reverse("console:queue", args=["mine"]))
    try:
        if action == "claim":
            exception_claim(exception_id=item.pk, actor=actor)
            messages.success(request, f"#{item.pk} is now yours.")
            return HttpResponseRedirect(detail_url)
        if action == "release":
            exception_release(exception_id=item.pk, actor=actor)
            messages.success(request, f"#{item.pk} released to the unassigned queue.")
            return HttpResponseRedirect(detail_url)
        if action == "resolve":
            form = ResolveForm(request.POST)
            if not form.is_valid():
                messages.error(request, f"Not resolved: {_form_errors(form)}")
                return HttpResponseRedirect(detail_url)
            exception_resolve(exception_id=item.pk, actor=actor, note=form.cleaned_data["note"])
            messages.success(request, f"#{item.pk} resolved.")
            return HttpResponseRedirect(after_close)
        if action == "dismiss":
            form = DismissForm(request.POST)
            if not form.is_valid():
                messages.error(request, f"Not dismissed: {_form_errors(form)}")
                return HttpResponseRedirect(detail_url)
            exception_dismiss(exception_id=item.pk, actor=actor, reason=form.cleaned_data["reason"])
            messages.success(request, f"#{item.pk} dismissed.")
            return HttpResponseRedirect(after_close)
        if action == "snooze":
            form = SnoozeForm(request.POST)
            if not form.is_valid():
                messages.error(request, f"Not snoozed: {_form_errors(form)}")
                return HttpResponseRedirect(detail_url)
            until = form.cleaned_data["until_at"]
            exception_snooze(
                exception_id=item.pk,
                actor=actor,
                until=until,
                reason=form.cleaned_data.get("reason", ""),
            )
            messages.success(request, f"#{item.pk} snoozed until {until:%Y-%m-%d %H:%M} UTC.")
            return HttpResponseRedirect(after_close)
        if action == "reassign":
            candidates = _candidates({item.organization_id})
            form = ReassignForm(request.POST, candidates=candidates)
            if not form.is_valid():
                messages.error(request, f"Not reassigned: {_form_errors(form)}")
                return HttpResponseRedirect(detail_url)
            assignee = next(u for u in candidates if u.pk == form.cleaned_data["assignee"])
            exception_reassign(exception_id=item.pk, actor=actor, assignee=assignee)
            messages.success(request, f"#{item.pk} assigned to {assignee.get_username()}.")
            return HttpResponseRedirect(detail_url)
        if action == "retry":
            form = RetryForm(request.POST)
            form.is_valid()
            label = form.cleaned_data.get("label") or None
            outcome = exception_retry(exception_id=item.pk, actor=actor, label=label)
            # An outcome says whether the retry did anything (a resend
            # queued, events applied); one that changed nothing is no success.
            report = messages.success if getattr(outcome, "changed", True) else messages.warning
            report(request, f"Retry of #{item.pk}: {outcome}")
            return HttpResponseRedirect(detail_url)
    except (BatonError, ValueError) as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(detail_url)
    messages.error(request, f"Unknown action {action!r}.")
    return HttpResponseRedirect(detail_url)


@login_required
def claim_next(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    access = console_access(request)
    if not access.can_work_anywhere:
        raise PermissionDenied("read-only access: your role cannot claim items")
    program = request.POST.get("program", "")
    item = exception_claim_next(
        user=request.user,
        organization_ids=access.work_org_ids,
        program_id=parse_number(program),
    )
    if item is None:
        messages.info(request, "Nothing to claim: the unassigned queue is empty.")
        return redirect("console:queue", tab="mine")
    messages.success(request, f"Claimed #{item.pk}: {item.title}")
    return HttpResponseRedirect(_item_url(item.pk, _safe_next(request, "")))


def _bulk_selection(request, access, form):
    """The items a bulk action will touch: the lead's organizations, active
    items only, at most BULK_MAX, in queue order. Returns (items, notes)."""
    notes = []
    base = scope_queryset(OpsException.objects.all(), request.user).filter(
        state__in=ACTIVE_EXCEPTION_STATES
    )
    lead_ids = access.lead_org_ids
    if lead_ids is not None:
        base = base.filter(organization_id__in=lead_ids)
    if form.cleaned_data["scope"] == "matching":
        tab = request.POST.get("tab", "open")
        tab = tab if tab in selectors.TABS else "open"
        filters = selectors.QueueFilters.from_query(request.POST)
        qs = selectors.apply_filters(
            base.filter(pk__in=selectors.tab_queryset(tab, request.user).values("pk")), filters
        )
    else:
        ids, bad = parse_ids(request.POST.getlist("ids"))
        if bad:
            notes.append(f"ignored {len(bad)} value(s) that are not item numbers")
        qs = base.filter(pk__in=ids[: BULK_MAX * 2])
    items = list(qs.order_by(*selectors.ORDERING).values_list("pk", flat=True)[: BULK_MAX + 1])
    if len(items) > BULK_MAX:
        notes.append(f"only the first {BULK_MAX} items (in queue order) are included")
        items = items[:BULK_MAX]
    return items, notes


@login_required
def bulk(request):
    """Two steps: POST without `confirm` shows the count; with it, runs per item."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    access = console_access(request)
    if not access.is_lead_anywhere:
        raise PermissionDenied("only leads can run bulk actions")
    candidates = _candidates(access.lead_org_ids)
    form = BulkForm(request.POST, candidates=candidates)
    back = _safe_next(request, reverse("console:queue", args=["open"]))
    if not form.is_valid():
        messages.error(request, f"Bulk action not started: {_form_errors(form)}")
        return HttpResponseRedirect(back)
    ids, notes = _bulk_selection(request, access, form)
    if not ids:
        nothing_ticked = form.cleaned_data["scope"] != "matching" and not request.POST.getlist(
            "ids"
        )
        messages.error(
            request,
            "Bulk action not started: tick at least one item, or choose “All … matching”."
            if nothing_ticked
            else "Bulk action not started: none of these items is open where you lead.",
        )
        return HttpResponseRedirect(back)
    data = form.cleaned_data
    assignee = None
    if data["action"] == "assign":
        assignee = next((u for u in candidates if u.pk == data["assignee"]), None)
    if request.POST.get("confirm") != "yes":
        return render(
            request,
            "console/bulk_confirm.html",
            {
                "form": form,
                "data": data,
                "ids": ids,
                "count": len(ids),
                "notes": notes,
                "assignee": assignee,
                "duration_label": dict(SNOOZE_CHOICES).get(data.get("duration"), ""),
                "action_label": dict(form.fields["action"].choices)[data["action"]],
                "back": back,
            },
        )
    actor = Actor.for_user(request.user)
    done, failures = 0, []
    for pk in ids:
        try:
            _bulk_one(pk, data, actor, assignee)
            done += 1
        except (BatonError, ValueError) as exc:
            failures.append((pk, str(exc)))
    return render(
        request,
        "console/bulk_result.html",
        {
            "done": done,
            "failures": failures,
            "action_label": dict(form.fields["action"].choices)[data["action"]],
            "back": back,
        },
    )


def _bulk_one(pk, data, actor, assignee):
    """One item of a bulk action, through the same service as the item page.
    Each call is its own transaction: a failure leaves the others done."""
    action = data["action"]
    if action == "assign":
        exception_reassign(exception_id=pk, actor=actor, assignee=assignee)
    elif action == "snooze":
        from django.utils import timezone

        exception_snooze(
            exception_id=pk,
            actor=actor,
            until=timezone.now() + SNOOZE_DELTAS[data["duration"]],
            reason=data.get("note") or "bulk snooze",
        )
    elif action == "resolve":
        exception_resolve(exception_id=pk, actor=actor, note=data["note"])
    elif action == "retry":
        exception_retry(exception_id=pk, actor=actor)
