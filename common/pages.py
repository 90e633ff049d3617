"""Helpers for server-rendered pages: role checks and service errors shown on forms."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import BaseForm

from . import roles


def role_required(*allowed: str) -> Callable:
    """Let only users holding one of `allowed` roles in.

    Anonymous users go to the login page; signed-in users of another role get a
    403, because the page itself (not one row) is off limits to them.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not roles.has_role(request.user, *allowed):
                raise PermissionDenied("This page is for " + " or ".join(roles.ROLE_LABELS[r].lower() + "s" for r in allowed) + ".")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


curator_required = role_required(roles.CURATOR)


def add_service_errors(form: BaseForm, exc: ValidationError, *, aliases: dict[str, str] | None = None) -> None:
    """Show a service's ValidationError beside the form field it names.

    A service names model fields; `aliases` maps those to form fields where they
    differ. Errors about fields the form does not have go to the top of the form.
    """
    aliases = aliases or {}
    if not hasattr(exc, "error_dict"):
        for message in exc.messages:
            form.add_error(None, message)
        return
    for name, errors in exc.error_dict.items():
        field = aliases.get(name, name)
        messages = [m for e in errors for m in e.messages]
        target = field if field in form.fields else None
        for message in messages:
            if target is None and name not in ("__all__", "non_field_errors"):
                message = f"{name}: {message}"
            form.add_error(target, message)
