"""Pages for people: the login page, the role landing pages, users and API tokens, vendors."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from curation import selectors as curation_selectors
from labeling import selectors as labeling_selectors
from labeling import services as labeling_services

from . import login_limits, roles, selectors, services
from .models import ApiToken
from .pages import add_service_errors, curator_required, role_required

# ------------------------------------------------------------------ login


class LoginForm(login_limits.LockoutMessageMixin, AuthenticationForm):
    """Django's login form, saying so when too many failures refused the attempt."""


class AdminLoginForm(login_limits.LockoutMessageMixin, AdminAuthenticationForm):
    """The admin's login form, likewise (set as admin.site.login_form in config/urls.py)."""


class LoginView(auth_views.LoginView):
    """Django's login page; an attempt refused by common.login_limits answers 429 with
    Retry-After and the message, its password unchecked."""

    authentication_form = LoginForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        lockout = getattr(self.request, login_limits.LOCKOUT_ATTR, None)
        if lockout is not None:
            response.status_code = 429
            response["Retry-After"] = str(lockout.retry_after)
        return response


@login_required
def home(request):
    """Send each role to its own landing page."""
    role = roles.primary_role(request.user)
    if role == roles.CURATOR:
        return redirect("curation:spec-list")
    if role == roles.REVIEWER:
        return redirect("review_next")
    if role in roles.VENDOR_ROLES:
        return redirect("my_work")
    if role == roles.MODEL_TEAM:
        return redirect("model_home")
    return render(request, "common/no_role.html", status=403)


@role_required(roles.MODEL_TEAM, roles.CURATOR)
def model_home(request):
    """The model team's start page: the specs they train on and how to use the API."""
    specs = curation_selectors.specs_visible_to(request.user).order_by("status", "name")
    from curation.views import annotate_spec_counts

    has_token = ApiToken.objects.filter(user=request.user).exists()
    return render(request, "common/model_home.html", {"specs": annotate_spec_counts(specs), "has_token": has_token})


# ------------------------------------------------------------------ users


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), min_length=8,
                               help_text="At least 8 characters, not only digits, not a common password.")
    role = forms.ChoiceField(choices=roles.ROLE_CHOICES)
    vendor = forms.ModelChoiceField(queryset=None, required=False,
                                    help_text="Required for vendor managers, annotators and reviewers.")
    email = forms.EmailField(required=False)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["vendor"].queryset = labeling_selectors.vendors_visible_to(user).filter(active=True)


def _user_rows(request):
    return selectors.users_visible_to(request.user)


USERS_PER_PAGE = 50


def _user_page(request, form, *, new_token=None, status=200):
    # Paged: a vendor's annotators run into the hundreds, each row with its forms.
    page = Paginator(_user_rows(request), USERS_PER_PAGE).get_page(request.GET.get("page"))
    users = list(page.object_list)
    for u in users:
        u.role_names = [roles.ROLE_LABELS[g.name] for g in u.groups.all() if g.name in roles.ROLE_LABELS]
        membership = getattr(u, "vendor_membership", None)
        u.vendor = membership.vendor if membership else None
        u.token = getattr(u, "api_token", None)
    return render(request, "common/users.html", {"users": users, "page": page, "form": form,
                                                 "new_token": new_token}, status=status)


@curator_required
def users(request):
    """List users with role and vendor; create one (POST)."""
    form = UserCreateForm(request.POST or None, user=request.user)
    if request.method == "POST":
        if form.is_valid():
            try:
                user = services.user_create(**form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"User {user.username} created.")
                return redirect("user_admin")
        return _user_page(request, form, status=400)
    return _user_page(request, form)


@curator_required
@require_POST
def user_token(request, pk: int):
    """Issue a fresh API token and show it once: it is rendered, never stored in a message."""
    user = get_object_or_404(selectors.users_visible_to(request.user), pk=pk)
    try:
        issued = services.api_token_rotate(user=user)
    except ValidationError as exc:  # a deactivated user (a stale page or a hand-made POST)
        for message in exc.messages:
            messages.error(request, message)
        return redirect("user_admin")
    return _user_page(request, UserCreateForm(user=request.user), new_token=issued)


@curator_required
@require_POST
def user_token_revoke(request, pk: int):
    """Revoke a user's API token (a leaked key) and leave the user active."""
    user = get_object_or_404(selectors.users_visible_to(request.user), pk=pk)
    if services.api_token_revoke(user=user):
        messages.success(request, f"The API token of {user.username} is revoked.")
    else:
        messages.info(request, f"{user.username} had no API token.")
    return redirect("user_admin")


@curator_required
@require_POST
def user_deactivate(request, pk: int):
    user = get_object_or_404(selectors.users_visible_to(request.user), pk=pk)
    try:
        services.user_deactivate(user=user, by=request.user)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"User {user.username} deactivated and their API token revoked.")
    return redirect("user_admin")


# ---------------------------------------------------------------- vendors


class VendorCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    contact_email = forms.EmailField(required=False)


VENDOR_NAME_TAKEN = "A vendor with this name already exists."


def _vendor_errors(exc: ValidationError) -> ValidationError:
    """The service's errors in the form's terms: the slug is made from the name and not on the
    form, so a name or slug already taken is one error of the name ("Acme Labeling" and
    "acme labeling" share the slug acme-labeling); any other slug error is the name's too."""
    if not hasattr(exc, "error_dict"):
        return exc
    errors: dict[str, list] = {}
    taken = False
    for field, field_errors in exc.error_dict.items():
        for error in field_errors:
            if field in ("name", "slug") and error.code == "unique":
                taken = True
            else:
                errors.setdefault("name" if field == "slug" else field, []).append(error)
    if taken:
        errors.setdefault("name", []).insert(0, ValidationError(VENDOR_NAME_TAKEN, code="unique"))
    return ValidationError(errors)


@curator_required
def vendors(request):
    """Outsourcing vendors with their member counts; create one (POST)."""
    form = VendorCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                vendor = labeling_services.vendor_create(**form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, _vendor_errors(exc))
            else:
                messages.success(request, f"Vendor {vendor.name} created.")
                return redirect("vendor_admin")
        status = 400
    rows = labeling_selectors.vendors_visible_to(request.user).annotate(members=Count("memberships"))
    return render(request, "common/vendors.html", {"vendors": rows, "form": form}, status=status)
