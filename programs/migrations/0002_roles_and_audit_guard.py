from django.db import migrations

from programs.roles import sync_role_groups

AUDIT_GUARD_SQL = """
CREATE OR REPLACE FUNCTION baton_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'programs_auditevent is append-only (%% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS programs_auditevent_append_only ON programs_auditevent;
CREATE TRIGGER programs_auditevent_append_only
    BEFORE UPDATE OR DELETE ON programs_auditevent
    FOR EACH ROW EXECUTE FUNCTION baton_audit_append_only();
"""
AUDIT_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS programs_auditevent_append_only ON programs_auditevent;
DROP FUNCTION IF EXISTS baton_audit_append_only();
"""


def install_audit_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(AUDIT_GUARD_SQL)


def remove_audit_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(AUDIT_GUARD_REVERSE)


class Migration(migrations.Migration):
    dependencies = [
        ("programs", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(sync_role_groups, migrations.RunPython.noop),
        migrations.RunPython(install_audit_guard, remove_audit_guard),
    ]
