"""manage.py import_labelstudio read as an attacker or a careless user would feed it.

A Label Studio export may come from a vendor or another team: every number, string, list and file
name in it is untrusted. Each test here names what was tried; a refusal must be a CommandError
naming the task and the field (never a traceback), and must leave no image row, file or prediction.
Resource checks use tracemalloc or patched functions, never the clock.
"""
from __future__ import annotations

import io
import json
import os
import tracemalloc
import unicodedata
from decimal import Decimal
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from common import rle, roles
from curation import labelstudio_import as ls
from curation.exporters.lsbrush import mask_to_ls_rle
from curation.imaging import decode_image
from curation.models import Image
from labeling import services as labeling
from labeling.models import Prediction
from tests import factories
from tests.conftest import stored_files
from tests.curation.test_import_labelstudio import H, W, brush, ls_task, polygon, rectangle, regions_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, name in enumerate(["a.png", "b.png", "c.png"]):
        (folder / name).write_bytes(factories.png_bytes(W, H, seed=700 + seed))
    return folder


def write_tasks(tmp_path, tasks) -> Path:
    path = tmp_path / "export.json"
    path.write_text(tasks if isinstance(tasks, str) else json.dumps(tasks), encoding="utf-8")
    return path


def run(tmp_path, images, spec, source, tasks, *args) -> str:
    out = StringIO()
    call_command("import_labelstudio", str(write_tasks(tmp_path, tasks)), "--images", str(images),
                 "--spec", spec.slug, "--source", str(source.pk), *args, stdout=out)
    return out.getvalue()


def refused(tmp_path, images, spec, source, tasks, message: str, *args) -> str:
    """The import is refused with `message` (a regex) and nothing is stored."""
    before = stored_files()
    with pytest.raises(CommandError, match=message) as exc:
        run(tmp_path, images, spec, source, tasks, *args)
    assert not Image.objects.filter(spec=spec).exists() and not Prediction.objects.exists()
    assert stored_files() == before
    return str(exc.value)


# --- numbers from JSON ----------------------------------------------------------------------

def test_integers_beyond_float_range_are_a_field_error_not_an_overflow(tmp_path, images, spec, source):
    # JSON allows any number of digits; float(10**400) raises OverflowError.
    big = "1" + "0" * 400
    for value, field in ((f'"x": {big}, "y": 1', r"value\.x: "), (f'"x": 1, "y": -{big}', r"value\.y: ")):
        text = ('[{"id": 1, "data": {"image": "a.png"}, "annotations": [{"id": 1, "result": [{"id": "r", '
                '"type": "rectanglelabels", "value": {' + value + ', "width": 1, "height": 1, '
                '"rectanglelabels": []}}]}]}]')
        refused(tmp_path, images, spec, source, text, r"tasks\[0\]\.annotations\[0\]\.result\[0\]\." + field)
    rot = json.dumps([ls_task("a.png", rectangle("r", 1, 2, 3, 4))]).replace('"rotation": 0.0', f'"rotation": {big}')
    refused(tmp_path, images, spec, source, rot, r"result\[0\]\.value\.rotation: must be a number of degrees")
    pts = json.dumps([ls_task("a.png", polygon("p", [(1, 1), (9, 1), (9, 9)]))]).replace("0.5,", f"{big},", 1)
    refused(tmp_path, images, spec, source, pts, r"result\[0\]\.value\.points\[0\]\[0\]: ")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e308", "-0.5"])
def test_nan_infinity_and_out_of_range_percents_and_rotations_are_refused(tmp_path, images, spec, source, bad):
    text = json.dumps([ls_task("a.png", rectangle("r", 1, 2, 3, 4))])
    refused(tmp_path, images, spec, source, text.replace('"x": 1', f'"x": {bad}'), r"result\[0\]\.value\.x: ")
    if bad != "-0.5":
        refused(tmp_path, images, spec, source, text.replace('"rotation": 0.0', f'"rotation": {bad}')
                if bad != "1e308" else text.replace('"rotation": 0.0', '"rotation": NaN'),
                r"result\[0\]\.value\.rotation: must be a number of degrees")


def test_a_rectangle_of_no_width_and_a_lying_original_size_are_refused(tmp_path, images, spec, source):
    refused(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 0, 4))],
            r"tasks\[0\]\.annotations\[0\]\.result\[0\]\.points: ")
    lying = rectangle("r", 1, 2, 3, 4)
    lying[0]["original_width"] = W * 2
    refused(tmp_path, images, spec, source, [ls_task("a.png", lying)],
            r"result\[0\]\.original_width: 400, but the image file is 200x100")


def test_deeply_nested_json_is_a_clean_error_not_a_recursion_error(tmp_path, images, spec, source):
    refused(tmp_path, images, spec, source, "[" * 200_000 + "]" * 200_000, r"export\.json: cannot read")


# --- the brush decoder ----------------------------------------------------------------------

def _stream(count: int, blocks: str) -> list[int]:
    """A brush RLE holding `count` values: 1-bit words, 1-bit length classes, then `blocks` (bits)."""
    bits = format(count, "032b") + "00000" + "0000" * 4 + blocks
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]


def test_a_brush_header_claiming_more_values_than_the_image_is_refused_before_allocating():
    header = _stream(2**32 - 1, "1001")          # claims 4 G values: one run of 1s
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="holds 4294967295 values; the image's width x height x 4 is 80000"):
            ls.brush_mask(header, width=200, height=100)
        assert tracemalloc.get_traced_memory()[1] < 1_000_000
    finally:
        tracemalloc.stop()


def test_a_long_brush_rle_is_not_unpacked_to_a_byte_per_bit():
    """A valid stream followed by megabytes of padding: the decoder reads the bits it needs, it does
    not first expand the whole list to one byte per bit (8 x its length, 800 MB for a 100 MB brush)."""
    w, h = 10, 10
    good = _stream(w * h * 4, "10001" * (w * h * 4))     # a run of one 1 per value
    padded = good + [0] * 4_000_000
    tracemalloc.start()
    try:
        mask = ls.brush_mask(padded, width=w, height=h)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert mask.all()
    assert peak < 12_000_000, peak                 # bytes(rle) is 4 MB; unpacked bits would be 32 MB


def test_the_brush_decoder_reads_runs_and_literals_as_the_sdk_does():
    # Every block shape once: runs of 1 and of many, literals of 1 and of many, 8-bit words.
    m = np.zeros((H, W), dtype=np.uint8)
    m[3:40, 7:150] = 1
    m[50, 0:3] = 1
    m[60:62, 198:200] = 1
    m[99, 199] = 1
    assert np.array_equal(ls.brush_mask(mask_to_ls_rle(rle.encode(m), W, H), width=W, height=H), m.astype(bool))
    fraction_sdk = [0, 0, 0, 216, 57, 27, 252, 224, 23, 255, 240, 152, 5, 255, 252, 86, 1, 63, 254, 35, 0, 194,
                    255, 246, 192, 48, 191, 252, 224, 0]
    mask = ls.brush_mask(fraction_sdk, width=9, height=6)
    assert mask.sum() == 8 + 2 + 12 and mask[2, 8] and mask[3, 0]
    for cut in (4, 6, 10, 29):
        with pytest.raises(ValueError, match="malformed brush RLE"):
            ls.brush_mask(fraction_sdk[:cut], width=9, height=6)


# --- polygons -------------------------------------------------------------------------------

def _reference_polygon_mask(points, *, width, height):
    """The rasteriser as first written (one Python step per edge and per span): the reference."""
    import math as m_
    mask = np.zeros((height, width), dtype=bool)
    rows, xs = [], []
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0), strict=True):
        if y0 == y1:
            continue
        lo, hi = min(y0, y1), max(y0, y1)
        first, stop = max(0, m_.ceil(lo - 0.5)), min(height, m_.ceil(hi - 0.5))
        if stop <= first:
            continue
        i = np.arange(first, stop)
        rows.append(i)
        xs.append(x0 + (i + 0.5 - y0) * (x1 - x0) / (y1 - y0))
    if not rows:
        return mask
    row, x = np.concatenate(rows), np.concatenate(xs)
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    _, first_of_row = np.unique(row, return_index=True)
    rank = np.arange(row.size) - np.repeat(first_of_row, np.diff(np.append(first_of_row, row.size)))
    for k in np.nonzero(rank % 2 == 0)[0]:
        if k + 1 >= row.size or row[k + 1] != row[k]:
            continue
        j0, j1 = max(0, m_.ceil(x[k] - 0.5)), min(width, m_.ceil(x[k + 1] - 0.5))
        if j1 > j0:
            mask[row[k], j0:j1] = True
    return mask


def test_the_polygon_fill_is_unchanged_on_random_and_exact_polygons():
    rng = np.random.default_rng(5)
    cases = [rng.uniform(0, 1, (n, 2)) * [W, H] for n in (3, 5, 9, 40) for _ in range(5)]
    cases += [np.array([(20, 10), (60, 10), (60, 30), (40, 30), (40, 50), (20, 50), (20, 30)], dtype=float),
              np.array([(0, 0), (W, 0), (W, H), (0, H), (0.5, 0.5)], dtype=float),
              np.array([(10.5, 10.5), (30.5, 10.5), (30.5, 10.5), (10.5, 30.5), (50, 5)], dtype=float)]
    for pts in cases:
        assert np.array_equal(ls.polygon_mask(pts, width=W, height=H), _reference_polygon_mask(pts, width=W, height=H))


def test_a_zigzag_polygon_is_refused_before_its_crossings_are_built(tmp_path, images, spec, source, monkeypatch):
    """Each edge of a polygon running the image's full height crosses every row: 20,000 points in a
    few hundred kB of JSON are 20,000 x height crossings (GBs at photo size). Refused by count first."""
    seen = []
    real = np.lexsort

    def lexsort(keys, *a, **kw):
        seen.append(len(keys[0]))
        assert len(keys[0]) < 5_000_000, "the crossings of a huge polygon were built"
        return real(keys, *a, **kw)

    monkeypatch.setattr(np, "lexsort", lexsort)
    n = 60_000
    pts = [((k + 0.5) * W / n, 0.01 if k % 2 == 0 else H - 0.01) for k in range(n)]
    message = refused(tmp_path, images, spec, source, [ls_task("a.png", polygon("z", pts))],
                      r"tasks\[0\]\.annotations\[0\]\.result\[0\]\.value\.points: the polygon's outline crosses "
                      r"the image's pixel rows 6000000 times")
    assert "at most" in message and not seen


def test_more_regions_than_an_image_may_hold_are_refused_before_they_are_converted(tmp_path, images, spec, source,
                                                                                     monkeypatch):
    calls = []
    real = ls.brush_mask
    monkeypatch.setattr(ls, "brush_mask", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    m = np.zeros((H, W), dtype=np.uint8)
    m[1:3, 1:3] = 1
    result = [r for k in range(labeling.MAX_REGIONS + 1) for r in brush(f"b{k}", m, latex=None)]
    refused(tmp_path, images, spec, source, [ls_task("a.png", result)],
            r"tasks\[0\]\.annotations\[0\]\.result: 501 regions; at most 500 are allowed per image")
    assert not calls


# --- malformed results ------------------------------------------------------------------------

def test_a_result_value_that_is_not_an_object_is_a_field_error(tmp_path, images, spec, source):
    result = rectangle("r", 1, 2, 3, 4)
    result[1]["value"] = "x^2"                       # the text area's value: a string, not {"text": [...]}
    refused(tmp_path, images, spec, source, [ls_task("a.png", result)],
            r"tasks\[0\]\.annotations\[0\]\.result\[1\]\.value: must be an object")


def test_a_to_name_that_is_not_a_string_names_no_image_tag(tmp_path, images, spec, source):
    # A list here was a TypeError (unhashable) with --config; now it simply names no <Image> tag.
    config = tmp_path / "label_config.xml"
    config.write_text('<View><Image name="image" value="$image"/></View>')
    result = rectangle("r", 1, 2, 3, 4)
    result[0]["to_name"] = ["image"]
    run(tmp_path, images, spec, source, [ls_task("a.png", result)], "--config", str(config))
    assert len(regions_of(spec)["a.png"]) == 1


@pytest.mark.parametrize("task_id", [float("nan"), {"nested": [1, 2]}, [3], True])
def test_a_task_id_that_is_not_a_number_or_a_string_is_refused(tmp_path, images, spec, source, task_id):
    # NaN would reach the image's meta (PostgreSQL's jsonb refuses it: a DataError after the files went in).
    task = ls_task("a.png", rectangle("r", 1, 2, 3, 4))
    task["id"] = task_id
    refused(tmp_path, images, spec, source, [task], r"tasks\[0\]\.id: must be a number or a string")


def test_latex_is_checked_as_predictions_check_it(tmp_path, images, spec, source):
    refused(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4, latex=r"\frac{1}{"))],
            r"tasks\[0\]\.annotations\[0\]\.result\[0\]\.latex: ")
    for bad in ("x\u0000", "x\ud800"):
        refused(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4, latex=bad))],
                r"result\[0\]\.latex: The LaTeX holds the control or surrogate character")
    run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4, latex="  x^{2}  "))])
    (region,) = regions_of(spec)["a.png"]
    assert region["latex"] == "x^{2}" and region["latex_normalized"]


# --- paths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["../outside/a.png", "/etc/../tmp/outside/a.png", "/data/local-files/?d=..%2F..%2Fa.png",
                                 "https://h/x%2F..%2F..%2Fa.png", "/data/local-files/?d=/abs/outside/a.png"])
def test_urls_name_a_file_of_the_images_folder_by_its_base_name_only(tmp_path, images, spec, source, url):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(factories.png_bytes(W, H, seed=1))
    run(tmp_path, images, spec, source, [ls_task(url, rectangle("r", 1, 2, 3, 4))])
    image = Image.objects.get(spec=spec)
    assert image.sha256 == decode_image((images / "a.png").read_bytes(), "a.png").sha256
    assert image.meta["label_studio"]["file"] == "a.png"


def test_a_nul_byte_in_the_url_names_no_file(tmp_path, images, spec, source):
    refused(tmp_path, images, spec, source, [ls_task("a.png\u0000.png", [])], r"tasks\[0\]\.data\.image: no file named")


def test_a_symlink_out_of_the_images_folder_is_refused_one_inside_is_used(tmp_path, images, spec, source):
    private = tmp_path / "private"
    private.mkdir()
    (private / "secret.png").write_bytes(factories.png_bytes(W, H, seed=5))
    (images / "d.png").symlink_to(private / "secret.png")
    refused(tmp_path, images, spec, source, [ls_task("d.png", [])],
            r"tasks\[0\]\.data\.image: d\.png is a link to a file outside the images folder")
    (images / "d.png").unlink()
    (images / "d.png").symlink_to(images / "c.png")
    run(tmp_path, images, spec, source, [ls_task("d.png", [])])
    assert Image.objects.filter(spec=spec).count() == 1


def test_an_nfd_file_name_is_found_from_an_nfc_url_and_stored_nfc(tmp_path, images, spec, source):
    nfc = "수식 사진.png"
    (images / unicodedata.normalize("NFD", nfc)).write_bytes(factories.png_bytes(W, H, seed=31))
    run(tmp_path, images, spec, source, [ls_task(f"/data/upload/1/0a1b2c3d-{nfc}", rectangle("r", 1, 2, 3, 4))])
    image = Image.objects.get(spec=spec)
    assert image.original_filename == nfc
    assert image.meta["label_studio"]["file"] == nfc


def test_a_file_name_that_is_not_utf8_is_refused_by_name(tmp_path, images, spec, source):
    # A zip made on a Korean Windows (CP949 names) unpacked here; a task may still name it by a "\udcc7" escape.
    raw = "수".encode("cp949") + b".png"
    with open(os.fsencode(images) + b"/" + raw, "wb") as f:
        f.write(factories.png_bytes(W, H, seed=41))
    name = raw.decode("utf-8", "surrogateescape")
    refused(tmp_path, images, spec, source, [ls_task(name, [])],
            r"tasks\[0\]\.data\.image: the file name .* is not UTF-8")


def test_the_same_file_for_two_tasks_is_refused(tmp_path, images, spec, source):
    refused(tmp_path, images, spec, source,
            [ls_task("a.png", [], id=1), ls_task("/data/upload/1/0a1b2c3d-a.png", [], id=2)],
            r"tasks\[1\]\.data\.image: the same image as tasks\[0\] \(same bytes\)")


# --- file contents ----------------------------------------------------------------------------

def test_a_file_over_the_upload_limit_is_refused_before_it_is_read(tmp_path, images, spec, source, settings,
                                                                    monkeypatch):
    (images / "big.png").write_bytes(factories.png_bytes(W, H, seed=3) + b"\0" * 50_000)
    settings.MATHSET_MAX_UPLOAD_BYTES = 20_000
    read = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or real(self))
    refused(tmp_path, images, spec, source, [ls_task("big.png", [])],
            r"tasks\[0\]\.data\.image: big\.png: the file is \d+ bytes; the limit is 20000 bytes")
    assert "big.png" not in read


def test_not_an_image_and_a_decompression_bomb_are_refused_before_decoding(tmp_path, images, spec, source, monkeypatch):
    (images / "notes.png").write_bytes(b"this is not an image")
    refused(tmp_path, images, spec, source, [ls_task("notes.png", [])], r"notes\.png: not an image")
    # A PNG whose header claims 30000 x 30000 pixels (900 M): refused from the header, never decoded.
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 30001 * 10)) + chunk(b"IEND", b""))
    (images / "bomb.png").write_bytes(bomb)
    loads = []
    real = PILImage.Image.load
    monkeypatch.setattr(PILImage.Image, "load", lambda self: loads.append(self.size) or real(self))
    refused(tmp_path, images, spec, source, [ls_task("bomb.png", [])],
            r"bomb\.png: (the image claims 30000x30000|refused as a decompression bomb)")
    assert (30000, 30000) not in loads


def _exif_jpeg(width: int, height: int, orientation: int, box: tuple[int, int, int, int]) -> bytes:
    img = PILImage.new("RGB", (width, height), (255, 255, 255))
    img.paste((0, 0, 0), box)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_an_exif_rotated_photo_takes_percents_of_the_image_as_label_studio_shows_it(tmp_path, images, spec, source):
    """Orientation 6: the browser (and Label Studio) shows the 200 x 100 stored pixels turned 90 degrees
    clockwise, a 100 x 200 image; the raw pixel (x, y) shows at (100 - y, x). A black box at raw
    x 20..60, y 10..30 shows at x 70..90, y 20..60: that is where the labeller drew, in percent of 100 x 200."""
    (images / "phone.jpg").write_bytes(_exif_jpeg(200, 100, 6, (20, 10, 60, 30)))
    shown = [{"id": "r", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
              "original_width": 100, "original_height": 200,
              "value": {"x": 70, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["printed"]}}]
    raw_size = [{**shown[0], "original_width": 200, "original_height": 100}]
    refused(tmp_path, images, spec, source, [ls_task("phone.jpg", raw_size)],
            r"original_width: 200, but the image file is 100x200")
    run(tmp_path, images, spec, source, [ls_task("phone.jpg", shown)])
    pred = Prediction.objects.get(image__spec=spec)
    assert (pred.image.width, pred.image.height) == (100, 200)
    assert np.allclose(pred.regions[0]["points"], [[70, 20], [90, 20], [90, 60], [70, 60]], atol=1e-9)
    with default_storage.open(pred.image.file, "rb") as f:
        stored = np.asarray(PILImage.open(f).convert("L"))
    assert stored.shape == (200, 100)
    assert stored[22:58, 72:88].mean() < 30                 # the box, where the quad says
    assert stored[:, :65].mean() > 240 and stored[65:, :].mean() > 240


# --- what is imported -------------------------------------------------------------------------

def test_an_empty_result_is_an_empty_prediction_and_cancelled_annotations_are_passed_over(tmp_path, images, spec,
                                                                                          source):
    tasks = [{"id": 1, "data": {"image": "a.png"},
              "annotations": [{"id": 1, "result": [], "updated_at": "2026-02-01"},
                              {"id": 2, "result": rectangle("r", 1, 2, 3, 4), "updated_at": "2026-01-01"}]},
             {"id": 2, "data": {"image": "b.png"},
              "annotations": [{"id": 3, "result": rectangle("r", 1, 2, 3, 4), "was_cancelled": True}],
              "predictions": [{"id": 9, "result": [], "score": 0.5}]}]
    run(tmp_path, images, spec, source, tasks)
    got = {p.image.original_filename: (p.regions, p.confidence) for p in Prediction.objects.filter(image__spec=spec)}
    assert got == {"a.png": ([], None), "b.png": ([], 0.5)}


def test_a_reimport_replaces_the_prediction_unless_an_annotation_started_from_it(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4, latex="x")),
                                         ls_task("b.png", rectangle("r", 1, 2, 3, 4, latex="x"))], "--model-version", "v")
    preds = {p.image.original_filename: p for p in Prediction.objects.filter(image__spec=spec)}
    vendor = factories.make_vendor()
    labeling.batch_create(spec=spec, vendor=vendor, name="b", unit_price=Decimal("0.1"), quantity=2, overlap=1,
                          kind="full")
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    claim = labeling.task_claim_next(annotator=annotator)
    started = preds[claim.task.image.original_filename]
    regions = [{k: v for k, v in r.items() if k != "latex_normalized"} for r in started.regions]
    labeling.annotation_create(task=claim.task, annotator=annotator, regions=regions, started_from=started)
    other = ({"a.png", "b.png"} - {started.image.original_filename}).pop()

    out = run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4, latex="y")),
                                               ls_task("b.png", rectangle("r", 1, 2, 3, 4, latex="y"))],
              "--model-version", "v")
    latex = {p.image.original_filename: p.regions[0]["latex"] for p in Prediction.objects.filter(image__spec=spec)}
    assert latex == {started.image.original_filename: "x", other: "y"}
    assert Prediction.objects.filter(image__spec=spec).count() == 2
    assert f"an annotation started from its prediction label-studio@v (id {started.pk})" in out
    assert "1 prediction(s) stored, 1 kept" in out


def test_a_clean_import_of_many_tasks_prints_one_line(tmp_path, images, spec, source):
    for k in range(30):
        (images / f"p{k}.png").write_bytes(factories.png_bytes(W, H, seed=1000 + k))
    out = run(tmp_path, images, spec, source, [ls_task(f"p{k}.png", rectangle("r", 1, 2, 3, 4), id=k)
                                               for k in range(30)])
    assert out.count("\n") == 1 and "Imported 30 task(s)" in out and "30 prediction(s) stored" in out


def test_a_category_mapped_to_nothing_leaves_the_region_without_one(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4, label="Formula"))],
        "--category-map", "Formula=")
    assert regions_of(spec)["a.png"][0]["categories"] == []


def test_the_dry_run_writes_no_image_file_and_no_thumbnail(tmp_path, images, spec, source):
    before = stored_files()
    out = run(tmp_path, images, spec, source, [ls_task("a.png", rectangle("r", 1, 2, 3, 4))], "--dry-run")
    assert "Would import 1 task(s)" in out
    assert stored_files() == before and not Image.objects.exists() and not Prediction.objects.exists()


def test_the_same_note_on_many_tasks_is_printed_once_with_its_count(tmp_path, images, spec, source):
    """A truth import of rotated rectangles notes on every task that the quad is not kept: 10,000
    tasks were 20,000 lines. Without -v 2 a note shared by tasks is one line with their count."""
    for k in range(30):
        (images / f"p{k}.png").write_bytes(factories.png_bytes(W, H, seed=2000 + k))
    tasks = [ls_task(f"p{k}.png", rectangle("r", 1, 2, 30, 40, rotation=5, latex="x"), id=k) for k in range(30)]
    out = run(tmp_path, images, spec, source, tasks, "--as", "truth")
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("note (30 tasks: tasks[0], tasks[1], tasks[2], ...): its quad is not kept")
    assert "Imported 30 task(s)" in lines[1] and "30 truth(s) stored" in lines[1]
    verbose = run(tmp_path, images, factories.make_spec(), source, tasks, "--as", "truth", "-v", "2")
    assert verbose.count("note: its quad is not kept") == 30
