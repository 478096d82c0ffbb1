from django.contrib import admin


class BatonAdminSite(admin.AdminSite):
    site_header = "Baton operations console"
    site_title = "Baton operations console"
    index_title = "Configuration and raw data"
