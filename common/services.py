"""Write paths for people: users with a role, and their API tokens."""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import roles
from .login_limits import username_key, window
from .models import ApiToken, LoginFailure


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    role: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    vendor=None,
) -> User:
    """Create a user in one role. Vendor roles need the vendor they work for."""
    if role not in roles.ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}; use one of {', '.join(roles.ROLES)}."})
    if role in roles.VENDOR_ROLES and vendor is None:
        raise ValidationError({"vendor": f"A {roles.ROLE_LABELS[role].lower()} must belong to a vendor."})
    if role not in roles.VENDOR_ROLES and vendor is not None:
        raise ValidationError({"vendor": f"A {roles.ROLE_LABELS[role].lower()} does not belong to a vendor."})
    # Compare the name as it will be stored: User.clean() folds it with NFKC, so "ｂob" is saved
    # as "bob", and checked unfolded it slipped past an existing "Bob".
    username = User.normalize_username(username)
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": f"The username {username!r} is taken."})
    # Curators also work in the Django admin.
    user = User(username=username, email=email, first_name=first_name, last_name=last_name,
                is_staff=role == roles.CURATOR)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(password)
    user.full_clean(exclude=["password"])
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # Another request created "Bob" between the check above and this insert: the
        # unique index on lower(username) (migration common.0004) refused the second one.
        raise ValidationError({"username": f"The username {username!r} is taken."}) from None
    user.groups.add(Group.objects.get(name=role))
    if vendor is not None:
        from labeling.services import vendor_member_add

        vendor_member_add(vendor=vendor, user=user)
    return user


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: the key, to show once, and the stored row (which holds no key)."""

    key: str
    token: ApiToken


@transaction.atomic
def api_token_rotate(*, user: User) -> IssuedToken:
    """Give `user` a fresh API token, revoking the old one. Only the key's digest is stored.

    Refused for a deactivated user: token authentication turns them away, so the key shown
    once would never have worked."""
    if not user.is_active:
        raise ValidationError({"user": f"{user.username} is deactivated; an API token would not work."})
    ApiToken.objects.filter(user=user).delete()
    key = ApiToken.new_key()
    token = ApiToken.objects.create(user=user, digest=ApiToken.digest_of(key), prefix=key[:12])
    return IssuedToken(key=key, token=token)


@transaction.atomic
def api_token_revoke(*, user: User) -> bool:
    """Revoke `user`'s API token (a leaked key) without switching the user off; False if none."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return bool(deleted)


@transaction.atomic
def user_deactivate(*, user: User, by: User | None = None) -> User:
    """Switch a user off, revoke their token and give back the work they held.

    Their sessions end by themselves (Django's ModelBackend loads no inactive user). Their
    live leases and review holds are released at once (`member_work_release`), or the tasks
    stayed nobody's until each lease ran out. `by`, the curator asking, may not switch
    themselves off: they would be locked out of the people page that switches them back on.
    """
    if by is not None and by.pk == user.pk:
        raise ValidationError({"user": "You cannot deactivate yourself."})
    from labeling.services import member_work_release

    user.is_active = False
    user.save(update_fields=["is_active"])
    ApiToken.objects.filter(user=user).delete()
    member_work_release(user=user)
    return user


@transaction.atomic
def login_failure_record(*, username: str, ip: str) -> LoginFailure:
    """Count one failed password login (see common.login_limits), and forget the failures
    that have left the window and no longer count."""
    now = timezone.now()
    failure = LoginFailure.objects.create(username=username_key(username), ip=ip, at=now)
    LoginFailure.objects.filter(at__lte=now - window()).delete()
    return failure


@transaction.atomic
def login_failures_reset(*, username: str, ip: str) -> None:
    """A successful password login from `ip`: the username's failures from that address no
    longer count. Failures from other addresses stay (a real user's login must not give an
    attacker elsewhere fresh guesses), and so do the address's for other usernames."""
    LoginFailure.objects.filter(username=username_key(username), ip=ip).delete()
