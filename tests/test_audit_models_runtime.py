"""Audit of the workers' model cache (pipeline.runtime.reader_for): a long-lived worker that has
read with many versions keeps a bounded number loaded, and a recalibrated builtin recognizer is
read with its new calibration without restarting the worker."""
from __future__ import annotations

import pytest

from pipeline import runtime, services
from pipeline.models import ModelVersion


@pytest.fixture
def counted_loads(monkeypatch):
    """FormulaReader replaced by a stub that records which folders it was built from."""
    loads = []

    class Stub:
        def __init__(self, detector_dir, recognizer_dir):
            loads.append((detector_dir, recognizer_dir))

    monkeypatch.setattr(runtime, "FormulaReader", Stub)
    monkeypatch.setattr(runtime, "_folder_for", lambda version: f"folder-{version.pk}")
    runtime.clear_cache()
    yield loads
    runtime.clear_cache()


def test_a_worker_keeps_a_bounded_number_of_models_loaded(db, counted_loads, monkeypatch):
    """Every evaluated candidate and every activated version used to stay loaded for the life of the
    worker process: memory grew with each one until the worker was killed."""
    monkeypatch.setenv("MATHSET_MODEL_CACHE", "2")
    recognizer = services.model_version_builtin(kind="recognizer")
    detectors = [ModelVersion.objects.create(kind="detector", name="d", version=str(i), source="upload",
                                             weights_sha256=f"{i:064d}") for i in range(5)]
    for detector in detectors:
        runtime.reader_for(detector, recognizer)
    assert len(runtime._cache) == 2
    runtime.reader_for(detectors[-1], recognizer)  # the latest is still loaded: no new load
    assert len(counted_loads) == 5


def test_a_recalibrated_builtin_recognizer_is_loaded_again(db, counted_loads):
    """calibrate_recognizer rewrites the builtin's config.json and its row follows, keeping its id:
    the cache, keyed by id alone, served the old calibration until the worker restarted."""
    detector = services.model_version_builtin(kind="detector")
    recognizer = services.model_version_builtin(kind="recognizer")
    first = runtime.reader_for(detector, recognizer)
    assert runtime.reader_for(detector, recognizer) is first
    recognizer.config = {**recognizer.config, "calibration": {"greedy": {"a": 2.0, "b": 0.0}}}
    recognizer.save(update_fields=["config"])
    again = ModelVersion.objects.get(pk=recognizer.pk)
    assert runtime.reader_for(detector, again) is not first
    assert len(counted_loads) == 2


def test_a_version_is_copied_for_the_workers_whole_or_not_at_all(team_api_upload, monkeypatch, tmp_path):
    """Two worker processes starting on a new version both copied its files into the same folder;
    one truncated weights.pt while the other, seeing config.json, was loading it. The copy is now
    made aside and moved in whole: the folder a worker loads from is never half written."""
    from django.core.files.storage import default_storage

    monkeypatch.setattr(runtime.tempfile, "gettempdir", lambda: str(tmp_path))
    version = team_api_upload
    final = tmp_path / "mathset-models" / f"{version.kind}-{version.pk}-{version.weights_sha256[:12]}"
    seen = []

    class WatchingStorage:
        def open(self, name, mode="rb"):
            seen.append(sorted(p.name for p in final.iterdir()) if final.exists() else None)
            return default_storage.open(name, mode)

    monkeypatch.setattr(runtime, "default_storage", WatchingStorage())
    folder = runtime._folder_for(version)
    assert seen == [None]  # nothing at the final place while copying
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.pt"]
    assert runtime._folder_for(version) == folder == final


@pytest.fixture
def team_api_upload(db):
    import io

    import torch

    from pipeline.ml.detector import DetectorConfig, TinyUNet

    buf = io.BytesIO()
    torch.save(TinyUNet(DetectorConfig()).state_dict(), buf)
    return services.model_version_upload(kind="detector", name="team-unet", version="1", file_name="w.pt",
                                         content=buf.getvalue(), fmt="state_dict", config=DetectorConfig().to_dict())
