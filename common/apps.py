from django.apps import AppConfig
from django.db.models.signals import post_migrate


def grant_curator_permissions(sender, **kwargs):
    """Curators manage every model of the platform in the admin as well (accounts included:
    they clear a locked-out username's failed logins and revoke API tokens there)."""
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.filter(name="curator").first()
    if group is None:
        return
    perms = Permission.objects.filter(
        content_type__app_label__in=["common", "curation", "labeling", "guides", "pipeline"]
    )
    group.permissions.add(*perms)


class CommonConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "common"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import (
            login_limits,
            lookups,  # noqa: F401 - registers JSONField's has_item lookup
        )
        post_migrate.connect(grant_curator_permissions, dispatch_uid="mathset_curator_perms")
        # Brute-force protection: count failed password logins, clear them on success.
        user_login_failed.connect(login_limits.on_login_failed, dispatch_uid="mathset_login_failed")
        user_logged_in.connect(login_limits.on_logged_in, dispatch_uid="mathset_logged_in")
