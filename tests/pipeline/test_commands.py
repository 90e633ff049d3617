"""CLI: detect/recognize --json shapes, evaluate_recognizer/evaluate_detector on tiny inputs."""
from __future__ import annotations

import io
import json
import re

import cv2
import numpy as np
import pytest
from django.core.management import call_command

from pipeline.ml import synth


@pytest.fixture(autouse=True)
def float32_encoder(monkeypatch):
    # "auto" means bfloat16 on a CPU with AMX: the readings these tests fit and compare would then
    # depend on the host CPU (an in-sample ECE comparison on 80 inks flipped on one)
    monkeypatch.setenv("MATHSET_ENCODER_PRECISION", "float32")


@pytest.fixture
def photo_files(tmp_path):
    rng = np.random.default_rng(2)
    paths = []
    for i in range(2):
        photo = synth.compose_photo(rng, [synth.render_pillow_text(f"x + {i} = y")], size=(180, 240))
        p = tmp_path / f"photo{i}.png"
        cv2.imwrite(str(p), photo.image[..., ::-1])
        paths.append(str(p))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    return paths, str(bad)


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, "--threads", "1", "--device", "cpu", stdout=out)
    return out.getvalue()


def test_detect_json_lists_regions_per_image_and_reports_unreadable_files(photo_files):
    paths, bad = photo_files
    result = json.loads(_run("detect", "--json", *paths, bad))
    assert [r["image"] for r in result] == [*paths, bad]
    for item in result[:2]:
        assert item["width"] == 240 and item["height"] == 180
        for region in item["regions"]:
            assert len(region["points"]) == 4 and all(len(p) == 2 for p in region["points"])
            assert 0 <= region["score"] <= 1
    assert "error" in result[2] and "regions" not in result[2]


def test_recognize_json_gives_latex_and_confidence_per_crop(tmp_path):
    p = tmp_path / "crop.png"
    cv2.imwrite(str(p), synth.render_pillow_text("a + b = c"))
    (item,) = json.loads(_run("recognize", "--json", str(p)))
    assert set(item) == {"image", "latex", "confidence", "tokens", "token_confidences"}
    assert item["latex"] == " ".join(item["tokens"]) and 0 <= item["confidence"] <= 1


def test_evaluate_recognizer_prints_metrics_and_writes_per_sample_rows(tmp_path):
    tsv = tmp_path / "set.tsv"
    lines = []
    for i, text in enumerate(["a+b", "x=1", r"\frac{1}{2}"]):
        img = synth.render_mathtext(text, size=20)
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        lines.append(f"{i}.png\t{text}")
    tsv.write_text("\n".join(lines) + "\n")
    results = tmp_path / "out.jsonl"
    summary = json.loads(_run("evaluate_recognizer", "--tsv", str(tsv), "--images", str(tmp_path),
                              "--results", str(results), "--json"))
    assert summary["samples"] == 3
    for key in ("exact_match", "within_1", "within_2", "token_edit_distance", "bleu4"):
        assert 0.0 <= summary[key] <= 1.0
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [r["image"] for r in rows] == ["0.png", "1.png", "2.png"]
    assert rows[2]["truth"] == r"\frac { 1 } { 2 }"


def test_evaluate_detector_on_pages_uses_the_ink_box_as_truth(tmp_path):
    page = np.full((300, 220, 3), 255, np.uint8)
    cv2.putText(page, "x+1=2", (40, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    cv2.imwrite(str(tmp_path / "p.png"), page)
    (tmp_path / "pages.tsv").write_text("p.png\tx+1=2\n")
    results = tmp_path / "det.jsonl"
    summary = json.loads(_run("evaluate_detector", "--tsv", str(tmp_path / "pages.tsv"), "--images", str(tmp_path),
                              "--results", str(results), "--json"))
    assert summary["images"] == 1 and {"precision", "recall", "f1", "mean_iou"} <= set(summary)
    (row,) = [json.loads(x) for x in results.read_text().splitlines()]
    assert row["image"] == "p.png" and row["truth"] == 1


@pytest.fixture
def recognizer_copy(tmp_path):
    """The committed recognizer in a folder of its own, without its calibration."""
    import shutil

    from pipeline.ml.inference import WEIGHTS_DIR

    folder = tmp_path / "recognizer"
    shutil.copytree(WEIGHTS_DIR / "recognizer", folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("calibration")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_calibrate_recognizer_fits_on_the_validation_inks_and_the_folder_then_reads_with_it(recognizer_copy,
                                                                                           shared_data):
    from pipeline.ml import calibration
    from pipeline.ml.inference import load_recognizer

    out = json.loads(_run("calibrate_recognizer", "--recognizer", str(recognizer_copy), "--limit", "80", "--json"))
    assert out["mode"] == "greedy" and out["samples"] == 80 and out["written"]
    assert out["fitted_on"] == "test-2013.tar.xz"
    # before: the sequence probability of an unfitted folder; after: a probability as often right as it says
    assert out["after"]["mean_confidence"] == pytest.approx(out["after"]["exact"], abs=0.01)
    assert out["after"]["ece"] < out["before"]["ece"]
    stored = json.loads((recognizer_copy / "config.json").read_text())["calibration"]["greedy"]
    assert stored["samples"] == 80 and stored["a"] == pytest.approx(out["a"], abs=1e-5)
    assert load_recognizer(recognizer_copy, device="cpu").calibration["greedy"] == calibration.Platt(
        a=stored["a"], b=stored["b"])


def test_calibrate_recognizer_can_fit_the_inks_and_their_truths_typeset(recognizer_copy, shared_data):
    from pipeline.ml import calibration

    both = json.loads(_run("calibrate_recognizer", "--recognizer", str(recognizer_copy), "--limit", "80", "--json",
                           "--dry-run", "--typeset"))
    inks = json.loads(_run("calibrate_recognizer", "--recognizer", str(recognizer_copy), "--limit", "80", "--json",
                           "--dry-run"))
    assert both["fitted_on"] == "test-2013.tar.xz + its truths typeset" and 150 <= both["samples"] <= 160
    # the same formulas read better in print: the fit over both says more at the same log-probability
    assert both["after"]["exact"] > inks["after"]["exact"]
    assert calibration.Platt(both["a"], both["b"])(-1.0) > calibration.Platt(inks["a"], inks["b"])(-1.0)


def test_calibrate_recognizer_dry_run_and_test_time_views_fit_their_own_way_of_reading(recognizer_copy, shared_data):
    before = (recognizer_copy / "config.json").read_bytes()
    out = json.loads(_run("calibrate_recognizer", "--recognizer", str(recognizer_copy), "--limit", "40", "--tta",
                          "--dry-run", "--json"))
    assert out["mode"] == "views:trim,wide" and not out["written"]
    assert (recognizer_copy / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--recognizer", "{tmp}/nowhere"], "no config.json there"),
        (["--crohme", "{tmp}/missing.tar.xz"], "no such file"),
        (["--limit", "-1"], "--limit must be 0 (all) or more"),
        (["--limit", "1"], "needs both exact and wrong readings"),  # one ink is all exact or all wrong
    ],
)
def test_calibrate_recognizer_refuses_bad_input_and_leaves_the_config_alone(recognizer_copy, shared_data, tmp_path,
                                                                          args, says):
    from django.core.management.base import CommandError

    before = (recognizer_copy / "config.json").read_bytes()
    args = [a.format(tmp=tmp_path) for a in args]
    if "--recognizer" not in args:
        args += ["--recognizer", str(recognizer_copy)]
    with pytest.raises(CommandError, match=re.escape(says)):
        _run("calibrate_recognizer", *args)
    assert (recognizer_copy / "config.json").read_bytes() == before
    assert not list(recognizer_copy.glob("*.tmp"))  # no half-written config left beside it


def test_evaluate_recognizer_reports_how_well_its_confidence_tells_right_from_wrong(tmp_path):
    tsv = tmp_path / "set.tsv"
    texts = ["a+b", "x=1", r"\frac{1}{2}", r"y^{2}", "7-3", r"\sqrt{z}"]
    for i, text in enumerate(texts):
        cv2.imwrite(str(tmp_path / f"{i}.png"), synth.render_mathtext(text, size=20))
    tsv.write_text("".join(f"{i}.png\t{t}\n" for i, t in enumerate(texts)))
    summary = json.loads(_run("evaluate_recognizer", "--tsv", str(tsv), "--images", str(tmp_path),
                              "--results", str(tmp_path / "out.jsonl"), "--json"))
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    confs = [r["confidence"] for r in rows]
    assert summary["confidence_mean_confidence"] == pytest.approx(sum(confs) / len(confs), abs=1e-4)
    assert summary["confidence_brier"] == pytest.approx(
        sum((c - r["exact"]) ** 2 for c, r in zip(confs, rows, strict=True)) / len(rows), abs=1e-4)
    assert {"confidence_auroc", "confidence_ece", "confidence_wrong_in_lowest_30pct"} <= set(summary)


def _im2latex_zip(path, crops_and_latex, split_list="validate.lst"):
    """An im2latex export as the exporter lays it out: images/, formulas.lst, <split>.lst."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("formulas.lst", "\n".join(latex for _, latex in crops_and_latex) + "\n")
        lines = []
        for k, (crop, _) in enumerate(crops_and_latex):
            ok, png = cv2.imencode(".png", crop)
            zf.writestr(f"images/{k}.png", png.tobytes())
            lines.append(f"{k}.png {k}")
        zf.writestr(split_list, "\n".join(lines) + "\n")
    return path


def test_calibrate_recognizer_fits_on_an_export_of_the_platforms_own_crops(recognizer_copy, tmp_path):
    from pipeline.ml.inference import load_recognizer, read_crops

    crops = [synth.render_mathtext(t, size=22, font="cm") for t in ("x+1", r"a^{2}", "y=3", "7-2", r"\pi r", "b+c")]
    readings = read_crops(load_recognizer(recognizer_copy, device="cpu"), crops)
    # half labelled as the model reads them (exact), half with answers it never gives (wrong)
    labelled = [(c, r.latex if k % 2 == 0 else r"\zeta \zeta") for k, (c, r) in enumerate(zip(crops, readings, strict=True))]
    export = _im2latex_zip(tmp_path / "snapshot-im2latex.zip", labelled)
    out = json.loads(_run("calibrate_recognizer", "--recognizer", str(recognizer_copy), "--export", str(export),
                          "--json"))
    assert out["fitted_on"] == "snapshot-im2latex.zip (validation)" and out["samples"] == 6
    assert out["after"]["exact"] == 0.5
    stored = json.loads((recognizer_copy / "config.json").read_text())["calibration"]["greedy"]
    assert stored["fitted_on"] == "snapshot-im2latex.zip (validation)" and stored["exact"] == 0.5


@pytest.mark.parametrize(
    ("make", "args", "says"),
    [
        (None, ["--export", "{tmp}/missing.zip"], "no such file"),
        ("garbage", ["--export", "{tmp}/export.zip"], "export.zip"),
        ("train-only", ["--export", "{tmp}/export.zip"], "no crop with LaTeX in its validation split"),
        ("train-only", ["--export", "{tmp}/export.zip", "--crohme", "{tmp}/x.tar.xz"], "not both"),
        (None, ["--split", "train"], "--split chooses a split of an --export ZIP"),
    ],
)
def test_calibrate_recognizer_refuses_a_bad_export_naming_it(recognizer_copy, tmp_path, make, args, says):
    from django.core.management.base import CommandError

    if make == "garbage":
        (tmp_path / "export.zip").write_bytes(b"not a zip file")
    elif make == "train-only":
        _im2latex_zip(tmp_path / "export.zip", [(synth.render_mathtext("x", size=22), "x")], split_list="train.lst")
    before = (recognizer_copy / "config.json").read_bytes()
    with pytest.raises(CommandError, match=re.escape(says)):
        _run("calibrate_recognizer", "--recognizer", str(recognizer_copy), *[a.format(tmp=tmp_path) for a in args])
    assert (recognizer_copy / "config.json").read_bytes() == before


def test_calibrate_recognizer_never_fits_on_a_test_split(recognizer_copy, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="invalid choice: 'test'"):
        _run("calibrate_recognizer", "--recognizer", str(recognizer_copy), "--export", str(tmp_path / "e.zip"),
             "--split", "test")
