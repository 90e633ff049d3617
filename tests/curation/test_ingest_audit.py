"""Ingest audit: phone photos lose their metadata, stay upright, and odd pixel formats
keep their ink in the thumbnail and the perceptual hash."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from PIL import ImageCms, PngImagePlugin

from curation import services
from curation.imaging import decode_image
from curation.importers import image_items
from curation.models import Image
from tests.conftest import stored_files

pytestmark = pytest.mark.django_db

SECRET = b"PUPIL-Jane-Doe"
SERIAL = "SERIAL-0042"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
       b'<dc:creator>PUPIL-Jane-Doe</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>')
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_exif(orientation: int | None = None) -> PILImage.Exif:
    exif = PILImage.Exif()
    if orientation:
        exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    exif[0xA431] = SERIAL  # body serial number
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)}  # GPS
    return exif


def page(size=(120, 60)) -> PILImage.Image:
    arr = np.full((size[1], size[0], 3), 255, np.uint8)
    arr[10:20, 5:15] = 0
    arr[40:50, 90:110] = (200, 0, 0)
    return PILImage.fromarray(arr)


def encode(img: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def assert_clean(data: bytes):
    """No GPS, serial number, XMP or comment left in the bytes."""
    assert SECRET not in data and SERIAL.encode() not in data and b"xmpmeta" not in data
    im = PILImage.open(io.BytesIO(data))
    exif = im.getexif()
    assert not exif.get_ifd(0x8825) and 0xA431 not in exif and 0x010F not in exif
    assert "comment" not in im.info and "xmp" not in im.info


def png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", SECRET.decode())
    return encode(page(), "PNG", pnginfo=info, exif=phone_exif(1))


PHOTOS = {
    "jpeg": lambda: encode(page(), "JPEG", exif=phone_exif(1), xmp=XMP, comment=SECRET, icc_profile=ICC),
    "jpeg-no-orientation": lambda: encode(page(), "JPEG", exif=phone_exif(), comment=SECRET),
    "jpeg-progressive-444": lambda: encode(page(), "JPEG", exif=phone_exif(1), comment=SECRET, progressive=True,
                                           subsampling=0),
    "jpeg-cmyk": lambda: encode(page().convert("CMYK"), "JPEG", exif=phone_exif(1), comment=SECRET),
    "png": png_with_metadata,
    "webp": lambda: encode(page(), "WEBP", exif=phone_exif(1), xmp=XMP, lossless=True),
    "gif": lambda: encode(page(), "GIF", comment=SECRET),
}


@pytest.mark.parametrize("kind", PHOTOS)
def test_stored_file_and_thumbnail_carry_no_metadata(curator_api, spec, source, kind):
    data = PHOTOS[kind]()
    r = curator_api.post("/api/v1/images/", {"spec": spec.id, "source": source.id, "categories": ["printed"],
                                             "file": SimpleUploadedFile(f"{kind}.img", data)}, format="multipart")
    assert r.status_code == 201, r.content
    body = r.json()
    served = b"".join(curator_api.get(body["file_url"]).streaming_content)
    thumb = b"".join(curator_api.get(body["thumbnail_url"]).streaming_content)
    assert_clean(served)
    assert_clean(thumb)
    with default_storage.open(Image.objects.get().file, "rb") as fh:
        assert_clean(fh.read())
    # Stripping is lossless: the pixels are those of the upload, in its format.
    original, stored = PILImage.open(io.BytesIO(data)), PILImage.open(io.BytesIO(served))
    assert stored.format == original.format and stored.mode == original.mode
    assert np.array_equal(np.asarray(stored), np.asarray(original))
    assert body["sha256"] and (body["width"], body["height"]) == (120, 60)


def test_colour_profile_is_kept_when_metadata_goes():
    d = decode_image(PHOTOS["jpeg"](), "p.jpg")
    assert PILImage.open(io.BytesIO(d.content)).info.get("icc_profile") == ICC
    rotated = decode_image(encode(page(), "JPEG", exif=phone_exif(6), icc_profile=ICC), "r.jpg")
    assert PILImage.open(io.BytesIO(rotated.content)).info.get("icc_profile") == ICC


def test_animated_gif_keeps_its_frames_without_comment():
    frames = [page(), PILImage.new("RGB", (120, 60), "black")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], comment=SECRET, loop=0)
    d = decode_image(data, "a.gif")
    stored = PILImage.open(io.BytesIO(d.content))
    assert stored.n_frames == 2 and SECRET not in d.content
    assert_clean(d.content)


def test_jpeg_trailer_after_end_of_image_is_dropped():
    data = PHOTOS["jpeg"]() + b"MPF second image " + SECRET
    d = decode_image(data, "t.jpg")
    assert SECRET not in d.content and d.content.endswith(b"\xff\xd9")


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_every_orientation_is_stored_upright_without_metadata(orientation, fmt):
    upright = page()
    undo = {1: None, 2: PILImage.Transpose.FLIP_LEFT_RIGHT, 3: PILImage.Transpose.ROTATE_180,
            4: PILImage.Transpose.FLIP_TOP_BOTTOM, 5: PILImage.Transpose.TRANSPOSE, 6: PILImage.Transpose.ROTATE_90,
            7: PILImage.Transpose.TRANSVERSE, 8: PILImage.Transpose.ROTATE_270}[orientation]
    raw = upright if undo is None else upright.transpose(undo)
    kw = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    d = decode_image(encode(raw, fmt, exif=phone_exif(orientation), **kw), f"o{orientation}")
    stored = PILImage.open(io.BytesIO(d.content))
    assert (d.width, d.height) == stored.size == (120, 60)
    assert stored.getexif().get(0x0112, 1) == 1
    diff = np.abs(np.asarray(stored.convert("RGB"), int) - np.asarray(upright, int))
    assert diff.mean() < 3  # JPEG re-encoding only
    assert_clean(d.content)


def test_sixteen_bit_scan_keeps_its_ink_in_thumbnail_and_hash():
    arr = np.full((60, 120), 60000, np.uint16)  # paper
    arr[20:40, 10:110] = 8000  # ink: dark, but above 255
    d = decode_image(encode(PILImage.fromarray(arr), "PNG"), "scan16.png")
    thumb = np.asarray(PILImage.open(io.BytesIO(d.thumbnail)).convert("L"))
    assert thumb.min() < 64 and thumb.max() > 200
    eight = decode_image(encode(PILImage.fromarray((arr >> 8).astype(np.uint8)), "PNG"), "scan8.png")
    assert d.phash == eight.phash


def test_black_ink_on_transparent_stays_visible():
    rgba = np.zeros((60, 120, 4), np.uint8)
    rgba[20:40, 10:110, 3] = 255  # black ink, transparent elsewhere
    for mode_img in (PILImage.fromarray(rgba), PILImage.fromarray(rgba).convert("LA")):
        d = decode_image(encode(mode_img, "PNG"), "ink.png")
        thumb = np.asarray(PILImage.open(io.BytesIO(d.thumbnail)).convert("L"))
        assert thumb.min() < 32 and thumb.max() > 220


def test_same_photo_with_other_exif_is_an_exact_duplicate(curator_api, spec, source):
    """The stored file has its metadata stripped, so the duplicate key (its hash) is the same."""
    with_gps = encode(page(), "JPEG", exif=phone_exif(1), quality=95)
    without = encode(page(), "JPEG", quality=95)
    a, created_a = services.image_ingest(spec=spec, source=source, data=with_gps, filename="a.jpg")
    b, created_b = services.image_ingest(spec=spec, source=source, data=without, filename="b.jpg")
    assert created_a and not created_b and a.id == b.id
    assert Image.objects.filter(spec=spec).count() == 1


def test_zip_import_names_and_metadata(tmp_path, spec, source):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("class 3b/week 1/ünïcode page.jpg", PHOTOS["jpeg"]())
        zf.writestr("../../escape.png", png_with_metadata())
        zf.writestr("__MACOSX/class 3b/._ünïcode page.jpg", b"\x00\x05\x16\x07resource fork")
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)  # a symlink member: its data is the target path
        zf.writestr(link, "/etc/passwd")
    report = services.ingest_batch(spec=spec, source=source, items=image_items(archive))
    assert report.imported == 2 and [f.file for f in report.failures] == ["link.png"]
    names = sorted(Image.objects.values_list("original_filename", flat=True))
    assert names == ["escape.png", "ünïcode page.jpg"]
    for im in Image.objects.all():
        assert im.file.startswith(f"images/{spec.id}/") and ".." not in im.file
        with default_storage.open(im.file, "rb") as fh:
            assert_clean(fh.read())
    assert len(stored_files()) == 4 and all(".." not in f for f in stored_files())


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image"),
])
def test_bad_files_in_a_bulk_store_nothing(curator_api, spec, source, data, reason):
    files = [SimpleUploadedFile("ok.jpg", PHOTOS["jpeg"]()), SimpleUploadedFile("../../bad.png", data)]
    r = curator_api.post("/api/v1/images/bulk/", {"spec": spec.id, "source": source.id, "files": files},
                         format="multipart")
    assert r.status_code == 400 and reason in str(r.json()), r.content
    assert Image.objects.count() == 0 and stored_files() == []
