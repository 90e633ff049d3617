"""Template context: the current user's roles, for navigation."""
from . import roles as role_utils


def roles(request):
    user = request.user
    return {
        "role": role_utils.primary_role(user),
        "is_curator": role_utils.is_curator(user),
        "role_labels": role_utils.ROLE_LABELS,
    }
