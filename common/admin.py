"""Admin for accounts: the failed logins that lock a username or address out (common.login_limits),
and who holds an API token.

Failed logins are read-only but deletable: deleting a username's rows lets them log in again at once.
"""
from django.contrib import admin

from .models import ApiToken, LoginFailure


@admin.register(LoginFailure)
class LoginFailureAdmin(admin.ModelAdmin):
    list_display = ("username", "ip", "at")
    search_fields = ("username", "ip")
    list_filter = ("at",)
    ordering = ("-at",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Which users hold an API token. Keys are never stored, so none can be read here; issue,
    rotate and revoke them on the users page (common.services), which shows a new key once."""

    list_display = ("user", "prefix", "created")
    search_fields = ("user__username", "prefix")
    list_select_related = ("user",)
    ordering = ("-created",)
    readonly_fields = ("user", "prefix", "created")
    exclude = ("digest",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
