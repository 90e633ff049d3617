"""Create the five role groups with the model permissions the admin needs."""
from django.db import migrations

ROLE_PERMS = {
    "curator": ["curation", "labeling", "guides", "pipeline"],
    "model_team": [],
    "vendor_manager": [],
    "annotator": [],
    "reviewer": [],
}


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLE_PERMS:
        Group.objects.get_or_create(name=name)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_PERMS)).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_groups, remove_groups)]
