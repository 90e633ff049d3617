"""One account per username, ignoring case, held by the database.

`common.services.user_create` refuses "bob" when "Bob" exists, but two requests at once
both passed that check and made two accounts that log in as each other's name on a
case-insensitive lookup. A unique index on lower(username) (an expression index, which
SQLite and PostgreSQL both have) makes the second insert fail; the service turns that
into the same 400 as the check.
"""
from django.db import migrations

INDEX = "common_auth_user_username_lower_uniq"


def create_index(apps, schema_editor):
    User = apps.get_model("auth", "User")
    seen: dict[str, str] = {}
    clashes = []
    for name in User.objects.order_by("pk").values_list("username", flat=True):
        key = name.lower()
        if key in seen:
            clashes.append(f"{seen[key]!r} and {name!r}")
        else:
            seen[key] = name
    if clashes:
        raise RuntimeError(
            "These accounts' usernames differ only in case: " + "; ".join(clashes)
            + ". Rename or deactivate-and-rename one of each pair (Django admin) and migrate again."
        )
    table = schema_editor.quote_name(User._meta.db_table)
    schema_editor.execute(f"CREATE UNIQUE INDEX {schema_editor.quote_name(INDEX)} ON {table} (lower(username))")


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(INDEX)}")


class Migration(migrations.Migration):
    dependencies = [
        ("common", "0003_api_token"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
