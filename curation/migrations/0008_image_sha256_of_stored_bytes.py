"""Image.sha256 becomes the hash of the stored (metadata-stripped) file.

Ingest used to hash the upload as it came, EXIF and all, so the same photo with
other metadata was stored twice. New ingests hash the stored bytes; this recomputes
the hash of the rows already stored from their files, so that re-uploading one of
them is still found as an exact duplicate.
"""
import hashlib

from django.db import migrations


def _file_sha256(storage, name: str) -> str | None:
    try:
        with storage.open(name, "rb") as fh:
            digest = hashlib.sha256()
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()
    except OSError:  # file missing from storage: nothing to hash, the row keeps its hash
        return None


def rehash_stored(apps, schema_editor):
    """Set each image's sha256 to the hash of its stored file.

    Two images of one spec that differed only in stripped metadata were both stored
    and now hash alike; (spec, sha256) is unique, so the older one takes the new hash
    and the later one keeps its old one (it remains a near-duplicate, for a curator to
    delete). Images whose file is missing keep their hash too.
    """
    from django.core.files.storage import default_storage

    Image = apps.get_model("curation", "Image")
    rows = Image.objects.order_by("id").values_list("id", "spec_id", "file", "sha256")
    for image_id, spec_id, name, old in rows.iterator(chunk_size=500):
        new = _file_sha256(default_storage, name)
        if new is None or new == old:
            continue
        if Image.objects.filter(spec_id=spec_id, sha256=new).exclude(id=image_id).exists():
            continue
        Image.objects.filter(id=image_id).update(sha256=new)


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0007_target_qps_range'),
    ]

    operations = [
        # Going back leaves the new hashes: they still identify the files, and the
        # original uploads are not kept to hash again.
        migrations.RunPython(rehash_stored, migrations.RunPython.noop),
    ]
