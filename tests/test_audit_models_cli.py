"""Audit of the evaluation commands on the TSV files model teams bring: a bad line, a missing or
corrupt image is skipped and counted, said on stderr, never a traceback that loses the run."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from pipeline.ml import synth


@pytest.fixture(autouse=True)
def float32_encoder(monkeypatch):
    monkeypatch.setenv("MATHSET_ENCODER_PRECISION", "float32")


def _run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, "--threads", "1", "--device", "cpu", "--json", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def messy_tsv(tmp_path):
    page = np.full((120, 220, 3), 255, np.uint8)
    cv2.putText(page, "x+1=2", (20, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    cv2.imwrite(str(tmp_path / "good.png"), page)
    cv2.imwrite(str(tmp_path / "crop.png"), synth.render_mathtext("x+1", size=20))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    tsv = tmp_path / "set.tsv"
    tsv.write_text("good.png\tx+1=2\n"
                   "a line without a tab\n"
                   "missing.png\tx\n"
                   "corrupt.png\ty\n"
                   "crop.png\tx+1\n")
    return tsv


def test_evaluate_recognizer_skips_and_counts_bad_lines_and_images(messy_tsv, tmp_path):
    results = tmp_path / "rec.jsonl"
    out, err = _run("evaluate_recognizer", "--tsv", str(messy_tsv), "--images", str(tmp_path),
                    "--results", str(results))
    summary = json.loads(out)
    assert summary["samples"] == 2 and summary["skipped"] == 3
    assert "set.tsv:2:" in err and "missing.png" in err and "corrupt.png" in err
    assert [json.loads(x)["image"] for x in results.read_text().splitlines()] == ["good.png", "crop.png"]


def test_evaluate_detector_skips_and_counts_bad_lines_and_images(messy_tsv, tmp_path):
    results = tmp_path / "det.jsonl"
    out, err = _run("evaluate_detector", "--tsv", str(messy_tsv), "--images", str(tmp_path),
                    "--results", str(results))
    summary = json.loads(out)
    assert summary["images"] == 2 and summary["skipped"] == 3
    assert "missing.png" in err and "corrupt.png" in err


@pytest.mark.parametrize("command", ["evaluate_recognizer", "evaluate_detector"])
def test_a_missing_or_empty_tsv_is_a_command_error_not_a_traceback(command, tmp_path):
    with pytest.raises(CommandError, match="no-such.tsv"):
        _run(command, "--tsv", str(tmp_path / "no-such.tsv"), "--images", str(tmp_path))
    (tmp_path / "empty.tsv").write_text("\n")
    with pytest.raises(CommandError, match="no samples"):
        _run(command, "--tsv", str(tmp_path / "empty.tsv"), "--images", str(tmp_path))
