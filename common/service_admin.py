"""Admin pages whose saves go through a service (one write path per operation).

Django's admin validates the form, then calls `save_model` inside the change view's
atomic block. A rule that only the service knows (a licence that would put
non-commercial images into a commercial spec, say) raises ValidationError there: without
this mixin that is a 500, or, where `save_model` caught it, a "changed successfully"
banner over a change that never happened. Here the atomic block rolls the attempt back
and the same POST is shown again with the service's errors on the form, as a form error
would be.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError


def _add_service_errors(form, exc: ValidationError) -> None:
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, errors in exc.message_dict.items():
        if field in form.fields:
            form.add_error(field, errors)
        else:
            form.add_error(None, [f"{field}: {message}" for message in errors])


class ServiceAdminMixin:
    """Show a ValidationError raised by `save_model` (a service) on the change form."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            # The view's atomic block has rolled back whatever the attempt wrote.
            request._mathset_service_errors = exc
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        errors = getattr(request, "_mathset_service_errors", None)
        if errors is None:
            return form_class

        class WithServiceErrors(form_class):
            def clean(self):
                cleaned = super().clean()
                _add_service_errors(self, errors)
                return cleaned

        return WithServiceErrors


class NoRawDeleteMixin:
    """No delete button, view or "delete selected" action: a raw delete bypasses the services and
    cascades (a batch takes its tasks, annotations and reviews, the paid work; a spec its images'
    rows but not their files; a snapshot its frozen items and export zips). Where deleting is
    an operation, an admin action calls its service instead (e.g. images: `image_delete`)."""

    def has_delete_permission(self, request, obj=None):
        return False
