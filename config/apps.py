from django.contrib.admin.apps import AdminConfig


class BatonAdminConfig(AdminConfig):
    default_site = "config.admin_site.BatonAdminSite"
