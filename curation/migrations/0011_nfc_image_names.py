"""Stored file names and capture sessions in Unicode NFC, as new uploads store them.

Rows stored before uploads were normalised keep what the uploading computer sent: a Mac sends
Hangul (and accented letters) decomposed (NFD), which never equals the same name typed in a
search box, and splits one capture session in two. This converts ``Image.original_filename``
and ``Image.capture_session`` where NFC differs, in batches (rows read by primary key, one
bulk UPDATE per batch). Reversing it does nothing: the decomposed spelling carried no meaning.
"""
import unicodedata

from django.db import migrations

BATCH = 2000


def _nfc(value: str, limit: int) -> str:
    normal = unicodedata.normalize("NFC", value)
    # NFC never lengthens a decomposed name; a name it would push over the column stays as it is.
    return normal if len(normal) <= limit else value


def names_to_nfc(apps, schema_editor, batch_size: int = BATCH) -> None:
    Image = apps.get_model("curation", "Image")
    limits = {f: Image._meta.get_field(f).max_length for f in ("original_filename", "capture_session")}
    last = 0
    while True:
        # Keyset batches rather than one open cursor: SQLite gives no isolation between a cursor
        # still being read and updates to the same table on its connection.
        rows = list(Image.objects.filter(pk__gt=last).order_by("pk")
                    .values_list("pk", "original_filename", "capture_session")[:batch_size])
        if not rows:
            return
        last = rows[-1][0]
        changed = []
        for pk, name, session in rows:
            if name.isascii() and session.isascii():
                continue
            new_name = _nfc(name, limits["original_filename"])
            new_session = _nfc(session, limits["capture_session"])
            if (new_name, new_session) != (name, session):
                changed.append(Image(pk=pk, original_filename=new_name, capture_session=new_session))
        if changed:
            Image.objects.bulk_update(changed, list(limits))


class Migration(migrations.Migration):

    dependencies = [
        ("curation", "0010_takedown"),
    ]

    operations = [
        migrations.RunPython(names_to_nfc, migrations.RunPython.noop, elidable=True),
    ]
