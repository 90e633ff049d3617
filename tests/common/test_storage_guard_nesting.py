"""`common.storage.guarded_files` nests: files saved by a guarded write that succeeded inside an
outer guarded block are deleted if the outer block fails later (its transaction never commits)."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from common.storage import guarded_files


def _save_inside(name: str) -> str:
    with guarded_files() as guard:
        return guard.save(name, b"pixels")


def test_an_inner_guard_hands_its_files_to_the_outer_one(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    with pytest.raises(RuntimeError), guarded_files():
        stored = _save_inside("nested/a.png")
        assert default_storage.exists(stored)  # the inner block succeeded: kept so far
        raise RuntimeError("the outer transaction failed")
    assert not default_storage.exists(stored)


def test_a_lone_guard_keeps_its_files_when_it_succeeds(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    stored = _save_inside("alone/a.png")
    assert default_storage.exists(stored)
    with guarded_files():
        kept = _save_inside("nested/b.png")
    assert default_storage.exists(kept)  # outer succeeded too


def test_an_inner_failure_deletes_only_its_own_files(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    with guarded_files() as outer:
        first = outer.save("outer/a.png", b"x")
        with pytest.raises(ValueError), guarded_files() as inner:
            second = inner.save("inner/b.png", b"y")
            raise ValueError
        assert default_storage.exists(first) and not default_storage.exists(second)
    assert default_storage.exists(first)
