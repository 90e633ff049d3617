"""Admin for accounts: the failed logins that lock a username or address out (common.login_limits),
and who holds an API token.

Failed logins are read-only but deletable: deleting a username's rows lets them log in again at once.
"""
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from .models import ApiToken, LoginFailure


class CaselessUserChangeForm(UserChangeForm):
    """Renaming a user refuses a name another account holds in another case, as creating one
    does (Django's UserCreationForm, `common.services.user_create`): the database's unique
    index on lower(username) would otherwise turn the save into a 500."""

    def clean_username(self):
        username = User.normalize_username(self.cleaned_data.get("username") or "")
        if User.objects.filter(username__iexact=username).exclude(pk=self.instance.pk).exists():
            raise ValidationError(f"The username {username!r} is taken.")
        return username


admin.site.unregister(User)


@admin.register(User)
class MathsetUserAdmin(UserAdmin):
    form = CaselessUserChangeForm


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
