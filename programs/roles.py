"""Roles as Django groups with permissions.

A membership gives a user one role in one organization; the matching group
grants the model permissions, and organization scoping (programs.tenancy)
limits which rows those permissions reach. The groups are created by a
migration and kept in sync after every `migrate`, so models added by later
apps get their permissions too.
"""

from django.contrib.auth.management import create_permissions

BATON_APPS = ("programs", "integrations", "messaging", "participants")

# Models whose rows coordinators work day to day (change = act on them).
COORDINATOR_CHANGE = {
    "programs.opsexception",
    "participants.participant",
    "participants.enrollment",
    "participants.stepinstance",
    "messaging.message",
}
COORDINATOR_ADD = {"programs.opsexception"}
LEAD_EXTRA = {
    "programs.bulk_act_opsexception",
    "programs.reassign_opsexception",
    "programs.add_program",
    "programs.change_program",
    "programs.add_programversion",
    "programs.change_programversion",
}
# Never granted through a role: only superusers touch these.
NEVER = {"programs.change_auditevent", "programs.delete_auditevent", "programs.add_auditevent"}


def _role_grants(perm_key: str, codename: str, model: str, role: str) -> bool:
    if perm_key in NEVER:
        return False
    action = codename.split("_", 1)[0]
    if role == "auditor":
        return action == "view"
    if role == "coordinator":
        return (
            action == "view"
            or (action == "change" and model in COORDINATOR_CHANGE)
            or (action == "add" and model in COORDINATOR_ADD)
        )
    if role == "lead":
        return _role_grants(perm_key, codename, model, "coordinator") or perm_key in LEAD_EXTRA
    return role == "admin"


def sync_role_groups(apps=None, schema_editor=None):
    """Create or update the four role groups. Safe to run any number of times."""
    from django.apps import apps as global_apps

    apps = apps or global_apps
    for app_config in global_apps.get_app_configs():
        if app_config.label in BATON_APPS:
            create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = list(
        Permission.objects.filter(content_type__app_label__in=BATON_APPS).select_related(
            "content_type"
        )
    )
    for role in ("coordinator", "lead", "admin", "auditor"):
        group, _ = Group.objects.get_or_create(name=role)
        granted = [
            p
            for p in perms
            if _role_grants(
                f"{p.content_type.app_label}.{p.codename}",
                p.codename,
                f"{p.content_type.app_label}.{p.content_type.model}",
                role,
            )
        ]
        group.permissions.set(granted)


def sync_role_groups_after_migrate(sender, **kwargs):
    sync_role_groups()
