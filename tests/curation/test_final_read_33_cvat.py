"""Final read 33 (CVAT for images 1.1 XML): what a hostile or broken annotations file must not do to
``import_cvat``, and what the export cannot write.

Each refusal names the element (or ``annotations`` for the file) and stores nothing; memory is bounded
by the file's size with a small factor, not by what its few bytes ask the reader to build (a polygon of
millions of points, millions of runs, millions of elements), and a large token is not parsed again and
again (no timings here: the reads are counted).
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError

from curation import cvat_import
from tests.conftest import stored_files
from tests.curation.test_cvat_import import (
    box,
    document,
    frame,
    mask,
    nothing_stored,
    polygon,
    regions_of,
    run,
)
from tests.curation.test_cvat_import import images as images  # noqa: F401  (the fixture: a.png, b.png, ...)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("encoding", ["shift_jis", "utf-7", "no-such-encoding"])
def test_an_encoding_the_parser_cannot_read_is_a_clear_refusal(tmp_path, images, spec, source, encoding):
    # expat reads UTF-8, UTF-16 and single-byte encodings; a multi-byte or unknown one raised a
    # ValueError / LookupError out of the command (a traceback), not an error naming the file.
    xml = document(frame("a.png", box(1, 2, 9, 8))).replace('encoding="utf-8"', f'encoding="{encoding}"')
    before = stored_files()
    with pytest.raises(CommandError, match=r"annotations: the XML's declared encoding cannot be read .*UTF-8"):
        run(tmp_path, images, spec, source, xml)
    assert nothing_stored(before)


@pytest.mark.parametrize(("attribute", "value"), [
    ("latex", r"a<i>z</i>b"),          # was stored as "a": the rest silently dropped
    ("illegible", "<b>true</b>"),      # was read as false
])
def test_an_attribute_holding_an_element_is_refused_not_cut_short(tmp_path, images, spec, source, attribute, value):
    if attribute == "latex":
        shape = box(1, 2, 9, 8).replace(">x</attribute>", f">{value}</attribute>")
    else:
        shape = box(1, 2, 9, 8).replace("</box>", f'<attribute name="{attribute}">{value}</attribute></box>')
    before = stored_files()
    with pytest.raises(CommandError, match=rf"image\[0\] box\[0\] attribute {attribute}: holds the element "
                                           r"<[ib]>; an attribute's value is text"):
        run(tmp_path, images, spec, source, document(frame("a.png", shape)))
    assert nothing_stored(before)


def test_comments_processing_instructions_and_cdata_in_an_attribute_are_its_text(tmp_path, images, spec, source):
    shape = box(1, 2, 9, 8).replace(">x</attribute>", "><![CDATA[a<b]]><!-- note -->+c<?pi x?></attribute>")
    run(tmp_path, images, spec, source, document(frame("a.png", shape)))
    assert regions_of(spec)["a.png"][0]["latex"] == "a<b+c"


def test_a_file_of_more_elements_than_the_limit_is_refused_while_it_is_read(tmp_path, images, spec, source,
                                                                            monkeypatch):
    # Every element read is held until its <image> ends (and each shape after): a 100 MiB file of
    # "<x>" or "<box/>" built several GB. Counted as they stream in, refused at the limit.
    monkeypatch.setattr(cvat_import, "MAX_XML_ELEMENTS", 60)
    converted = []
    real = cvat_import._frame
    monkeypatch.setattr(cvat_import, "_frame", lambda el, i: converted.append(i) or real(el, i))
    xml = document(frame("a.png", box(1, 2, 9, 8)), frame("b.png", "<x>" * 100 + "</x>" * 100, id_=1))
    before = stored_files()
    with pytest.raises(CommandError, match=r"annotations: more than 60 elements \(at image\[1\]\).*split the task"):
        run(tmp_path, images, spec, source, xml)
    assert converted == [0] and nothing_stored(before)


def test_a_file_of_more_shapes_than_the_limit_is_refused_while_it_is_read(tmp_path, images, spec, source,
                                                                          monkeypatch):
    monkeypatch.setattr(cvat_import, "MAX_SHAPES", 3)
    converted = []
    real = cvat_import._frame
    monkeypatch.setattr(cvat_import, "_frame", lambda el, i: converted.append(i) or real(el, i))
    xml = document(frame("a.png", box(1, 2, 9, 8), box(1, 2, 9, 8)),
                   frame("b.png", box(1, 2, 9, 8), box(1, 2, 9, 8), id_=1))
    before = stored_files()
    with pytest.raises(CommandError, match=r"image\[1\]: more than 3 shapes in the file.*split the task"):
        run(tmp_path, images, spec, source, xml)
    assert converted == [0] and nothing_stored(before)
    monkeypatch.setattr(cvat_import, "MAX_SHAPES", 4)
    run(tmp_path, images, spec, source, xml)
    assert len(regions_of(spec)["b.png"]) == 2


def test_a_polygon_of_more_points_than_the_limit_is_refused_before_its_numbers_are_read(tmp_path, images, spec,
                                                                                        source, monkeypatch):
    # 100 MiB of "1,1;" is 25 million points: 7 GB of Python lists and minutes, before any check.
    monkeypatch.setattr(cvat_import, "MAX_POLYGON_POINTS", 6)
    read = []
    real = cvat_import._number
    monkeypatch.setattr(cvat_import, "_number", lambda *a: read.append(1) or real(*a))
    seven = [(20, 10), (60, 10), (60, 30), (40, 30), (40, 50), (20, 50), (20, 30)]
    before = stored_files()
    with pytest.raises(CommandError, match=r"image\[0\] polygon\[0\] points: 7 points; at most 6"):
        run(tmp_path, images, spec, source, document(frame("a.png", polygon(seven))))
    assert read == [] and nothing_stored(before)
    run(tmp_path, images, spec, source, document(frame("a.png", polygon(seven[:6]))))
    assert regions_of(spec)["a.png"][0]["kind"] == "mask"


@pytest.mark.parametrize(("counts", "message"), [
    # More runs than the box has pixels (+1: the leading run of 0s may be empty) cannot be CVAT's;
    # it was read whole into Python lists first (a 100 MiB rle: GBs).
    ([0] * 13 + [12], r"14 runs; a 4x3 box has at most 13"),
    # One run longer than the box is refused before the runs are added up.
    ([0, 10**11, 0], r"a run of 100000000000 pixels; the 4x3 box has 12"),
    ("1,, 11", r"must be counts separated by commas"),
    ("1, 11,", r"must be counts separated by commas"),
    ("1 2, 9", r"must be counts separated by commas"),
    ("1, +11", r"must be counts separated by commas"),
])
def test_mask_runs_are_bounded_by_the_box_before_they_are_read(tmp_path, images, spec, source, counts, message):
    before = stored_files()
    with pytest.raises(CommandError, match=rf"image\[0\] mask\[0\] rle: {message}"):
        run(tmp_path, images, spec, source, document(frame("a.png", mask(counts, 3, 2, 4, 3))))
    assert nothing_stored(before)


def test_a_mask_read_from_runs_with_spaces_and_a_leading_empty_run_is_exact(tmp_path, images, spec, source):
    run(tmp_path, images, spec, source, document(frame("a.png", mask(" 0 ,3,  1,2 , 6 ", 3, 2, 4, 3))))
    (region,) = regions_of(spec)["a.png"]
    from common import rle

    got = rle.decode(region["mask"])
    assert got[2, 3:6].all() and got[3, 3:5].all() and got.sum() == 5


def test_huge_names_are_not_echoed_whole(tmp_path, images, spec, source):
    # A name, a tag or an attribute name of megabytes went whole into the report and the error fields.
    long = "n" * 5000
    out = io.StringIO()
    shape = box(1, 2, 9, 8).replace("</box>", f'<attribute name="{long}">1</attribute></box>')
    with pytest.raises(CommandError):
        run(tmp_path, images, spec, source, document(
            frame(long + ".png"), frame("a.png", shape, id_=1), frame("b.png", f"<{long}/>", id_=2)),
            "--dry-run", "-v", "2", out=out)
    text = out.getvalue()
    assert long not in text
    assert "image[0] name: 5004 characters; at most 1024" in text
    assert "image[2] " in text and "is not supported" in text


def test_the_file_is_fed_to_the_parser_in_large_chunks(tmp_path, monkeypatch):
    # ElementTree reads 16 KiB at a time and expat 2.5 parses a token spanning many of them again from
    # its start on each (quadratic: a 50 MB attribute, 80 s); read in READ_CHUNK pieces, a few passes.
    reads = []

    class Recorder(io.BytesIO):
        def read(self, n=-1):
            data = super().read(n)
            reads.append(len(data))
            return data

    big = 3 * cvat_import.READ_CHUNK
    xml = document(frame("a.png", box(1, 2, 9, 8))).replace("</annotations>", f"<!--{'x' * big}--></annotations>")
    doc = cvat_import.parse_annotations(Recorder(xml.encode()))
    assert [f.name for f in doc.frames] == ["a.png"]
    assert len(reads) <= 6 and all(n >= cvat_import.READ_CHUNK for n in reads[:-2])
    # The file the command reads, too.
    path = tmp_path / "annotations.xml"
    path.write_bytes(xml.encode())
    monkeypatch.setattr(Path, "open", lambda self, mode="r": Recorder(xml.encode()))
    reads.clear()
    assert [f.name for f in cvat_import.read_annotations(path).frames] == ["a.png"]
    assert len(reads) <= 6


def test_latex_xml_cannot_hold_refuses_the_export_naming_the_image_and_region():
    # The export format takes U+FFFE / U+FFFF (regions stored before labeling's LaTeX check refused them), and
    # XML 1.0 cannot hold them, not even as references: the export is refused rather than written
    # unreadable, and the error names the image and region to correct among thousands.
    from curation.exporters import ExportImage, ExportRegion, export
    from tests.datasets.helpers import IM2MARKUP, MIT

    quad = [[1, 1], [9, 1], [9, 5], [1, 5]]
    image = ExportImage(42, "00000042.png", 20, 10, "train", MIT, IM2MARKUP, regions=[
        ExportRegion(points=quad, latex="a"), ExportRegion(points=quad, latex="x\uffff")])
    with pytest.raises(ValueError, match=r"image 42 \(00000042\.png\) region 1: U\+FFFF cannot be written in XML"):
        export([image], io.BytesIO(), format="cvat", include_images=False)
