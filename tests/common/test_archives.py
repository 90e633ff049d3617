"""common.archives: folders, zips and tarballs read in place, bad members listed."""
from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from common.archives import ArchiveError, is_archive, iter_members


def make_tar(path, files: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_folder_members_in_name_order_filtered_by_suffix(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.inkml").write_bytes(b"two")
    (tmp_path / "1.INKML").write_bytes(b"one")
    (tmp_path / "skip.txt").write_bytes(b"x")
    (tmp_path / "._1.inkml").write_bytes(b"resource fork")
    members = list(iter_members(tmp_path, {".inkml"}))
    assert [(m.name, m.data) for m in members] == [("1.INKML", b"one"), ("b/2.inkml", b"two")]


def test_zip_and_tar_members_are_read_without_extracting(tmp_path):
    files = {"d/a.inkml": b"A", "d/b.inkml": b"B", "d/c.png": b"C"}
    make_tar(tmp_path / "x.tar.xz", files, "w:xz")
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    for archive in ("x.tar.xz", "x.zip"):
        assert is_archive(tmp_path / archive)
        got = {m.name: m.data for m in iter_members(tmp_path / archive, {".inkml"})}
        assert got == {"d/a.inkml": b"A", "d/b.inkml": b"B"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tar.xz", "x.zip"]


def test_truncated_tarball_keeps_what_came_before_and_lists_the_rest(tmp_path):
    big = bytes(range(256)) * 400
    make_tar(tmp_path / "x.tar", {"a.inkml": b"A", "b.inkml": big, "c.inkml": big}, "w")
    data = (tmp_path / "x.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    members = list(iter_members(tmp_path / "cut.tar", {".inkml"}))
    assert members[0].name == "a.inkml" and members[0].data == b"A"
    assert [m.name for m in members] == ["a.inkml", "b.inkml", "c.inkml"]
    assert members[-1].data is None and "truncated or corrupt archive" in members[-1].error


def test_not_an_archive_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ArchiveError, match="neither a folder, a zip nor a tar"):
        list(iter_members(tmp_path / "notes.txt"))
    with pytest.raises(ArchiveError, match="does not exist"):
        list(iter_members(tmp_path / "missing"))


def test_a_member_over_the_size_limit_is_listed_without_being_inflated(tmp_path, monkeypatch):
    """A zip bomb: 50 MB of zeros compress to ~50 kB; its declared size is refused before any
    byte of it is inflated (zipfile's read is never called for it)."""
    bomb = b"\0" * 50_000_000
    with zipfile.ZipFile(tmp_path / "x.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.png", bomb)
        zf.writestr("ok.png", b"fine")
    make_tar(tmp_path / "x.tar.gz", {"bomb.png": bomb, "ok.png": b"fine"})
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "bomb.png").write_bytes(b"x" * 2000)
    (tmp_path / "dir" / "ok.png").write_bytes(b"fine")
    reads = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, info, *a: reads.append(info.filename)
                        or real_read(self, info, *a))
    for source in ("x.zip", "x.tar.gz", "dir"):
        got = {m.name: (m.data, m.error) for m in iter_members(tmp_path / source, {".png"}, max_bytes=1000)}
        assert got["ok.png"] == (b"fine", "")
        assert got["bomb.png"][0] is None and "more than the 1,000 allowed" in got["bomb.png"][1]
    assert reads == ["ok.png"]


def test_folders_skip_macos_resource_folders_like_archives_do(tmp_path):
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "a.inkml").write_bytes(b"fork")
    (tmp_path / "a.inkml").write_bytes(b"A")
    assert [m.name for m in iter_members(tmp_path, {".inkml"})] == ["a.inkml"]
