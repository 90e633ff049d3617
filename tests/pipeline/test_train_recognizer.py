"""The recognizer's training stream: samples fixed by (seed, epoch, index), resumable batches."""
from __future__ import annotations

import gzip
import json
import pickle
import re

import numpy as np
import pytest
import torch

from common.inkml import Ink, ink_bbox
from common.latex import normalize_tokens
from pipeline.ml import synth, train_recognizer
from pipeline.ml.ink import distort_symbols
from pipeline.ml.recognizer import Recognizer, RecognizerConfig
from pipeline.ml.train_recognizer import BucketedBatches, FormulaCrops, cached_printed_pool, collate, printed_jobs

VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "x", "+", "1", "="]


def _cfg(**kw) -> RecognizerConfig:
    return RecognizerConfig(vocab=VOCAB, height=64, max_width=512, **kw)


def _items():
    stroke = np.array([[0, 0], [10, 12], [20, 0], [30, 12]], np.float32)
    ink = Ink(traces=[stroke, stroke + [40, 0]], truth="x+1", symbols=[("x", [0]), ("1", [1])])
    printed = np.full((30, 90), 255, np.uint8)
    printed[10:20, 10:80] = 0
    return [("ink", ink, ["x", "+", "1"]), ("img", printed, ["x", "=", "1", "zzz"])]


def test_a_sample_depends_only_on_seed_epoch_and_index():
    ds = FormulaCrops(_items(), _cfg(), seed=7)
    a, ids = ds[(0, 0)]
    b, _ = ds[(0, 0)]
    c, _ = ds[(1, 0)]
    assert a.shape[0] == 64 and np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the ink is drawn anew in the next epoch
    assert ids == [1, 4, 5, 6, 2]


def test_unknown_tokens_map_to_unk_and_batches_pad_to_one_width():
    ds = FormulaCrops(_items(), _cfg(), seed=0)
    x, tok = collate([ds[(0, 0)], ds[(0, 1)]])
    assert x.shape[:3] == (2, 1, 64) and x.shape[3] % 8 == 0
    assert tok.tolist()[1] == [1, 4, 7, 6, 3, 2]
    assert tok.tolist()[0][-1] == 0  # the shorter sequence is padded


def test_batches_cover_every_index_once_per_epoch_and_resume_at_the_same_batch():
    aspects = [float(a) for a in np.random.default_rng(0).uniform(1, 10, 103)]
    full = BucketedBatches(aspects, 10, seed=3, start=(0, 0))
    epoch0 = full.epoch_batches(0)
    assert sorted(j for b in epoch0 for j in b) == list(range(103))
    stream = iter(full)
    first = [next(stream) for _ in range(len(epoch0) + 4)]
    resumed = iter(BucketedBatches(aspects, 10, seed=3, start=(1, 2)))
    assert [next(resumed) for _ in range(2)] == first[len(epoch0) + 2:len(epoch0) + 4]
    assert all(key[0] == 1 for key in first[len(epoch0)])


def test_residual_encoder_reads_a_64_pixel_line_at_stride_8():
    model = Recognizer(_cfg(encoder="res", channels=(8, 16, 16, 24), d_model=32, heads=4, ff=64)).eval()
    with torch.no_grad():
        mem, pad = model.encode(torch.rand(2, 1, 64, 200))
        assert mem.shape == (2, 8 * 25, 32) and pad.shape == (2, 200)
        out = model.greedy(torch.rand(1, 1, 64, 96), max_len=5)
    assert len(out) == 1 and len(out[0][0]) <= 6  # max_len tokens and the end-of-sequence slot


def _tiny_shared(root, *, validation_truth: str | None = None):
    """A shared-data folder of the real layout with 3 training inks and 2 training pages (and, given
    ``validation_truth``, a third training page in the im2markup validation eighth that reads it)."""
    import io
    import tarfile

    from PIL import Image

    from pipeline.ml.data import im2markup_heldout, im2markup_validation

    (root / "crohme").mkdir(parents=True)
    # training inks, and the 2013 test inks that --val reads
    for tarball, truths in (("train-2016.tar.xz", ["$x+1$", "$x=1$", "$1+x$"]), ("test-2013.tar.xz", ["$x+1$"])):
        with tarfile.open(root / "crohme" / tarball, "w:xz") as tf:
            for i, truth in enumerate(truths):
                body = (f'<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">{truth}</annotation>'
                        f'<trace id="0">0 0, 10 20, {20 + i} 0</trace><trace id="1">30 10, 50 10</trace></ink>').encode()
                info = tarfile.TarInfo(f"ink/{i}.inkml")
                info.size = len(body)
                tf.addfile(info, io.BytesIO(body))
    pages = root / "im2markup" / "pages"
    pages.mkdir(parents=True)
    names = [n for n in (f"p{i}.png" for i in range(40)) if not im2markup_heldout(n) and not im2markup_validation(n)][:2]
    for name in names:
        page = Image.new("LA", (200, 120), (255, 0))
        page.paste((0, 255), (40, 50, 150, 70))
        page.save(pages / name)
    rows = [(n, "x+1=x") for n in names]
    if validation_truth:
        rows.append((next(n for n in (f"v{i}.png" for i in range(200)) if im2markup_validation(n)), validation_truth))
    for name, _ in rows[len(names):]:
        page = Image.new("LA", (200, 120), (255, 0))
        page.paste((0, 255), (30, 40, 170, 80))
        page.save(pages / name)
    (root / "im2markup" / "train.tsv").write_text("".join(f"{n}\t{src}\n" for n, src in rows))


def test_training_runs_resumes_from_its_checkpoint_and_exports_loadable_weights(tmp_path, monkeypatch):
    from pipeline.ml import data, train_recognizer
    from pipeline.ml.inference import load_recognizer

    _tiny_shared(tmp_path / "shared")
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")  # never the real corpora's cache
    run, out = tmp_path / "run", tmp_path / "weights"
    args = ["--run", str(run), "--out", str(out), "--batch", "2", "--printed", "4", "--ckpt-every", "1",
            "--encoder", "res", "--channels", "4,8,8,8", "--d-model", "16", "--heads", "2", "--layers", "1",
            "--ff", "32", "--height", "32", "--max-width", "128", "--warmup", "1", "--val", "2"]
    train_recognizer.main([*args, "--steps", "2"])
    first = torch.load(run / "last.pt", weights_only=False)
    assert first["step"] == 2
    assert not list(run.glob("step-*.pt"))  # only with --keep-checkpoints
    train_recognizer.main([*args, "--steps", "4"])
    second = torch.load(run / "last.pt", weights_only=False)
    assert second["step"] == 4 and second["config"] == first["config"]
    assert (second["epoch"], second["batch_in_epoch"]) != (first["epoch"], first["batch_in_epoch"])
    best = torch.load(run / "best.pt", weights_only=False)  # validated at steps 2 and 4
    assert best["step"] in (2, 4) and 0.0 <= best["best_val"] <= 1.0
    model = load_recognizer(out, device="cpu")
    assert model.cfg.encoder == "res" and model.cfg.height == 32
    assert {"x", "+", "1", "="} <= set(model.cfg.vocab)


def test_im2markup_validation_pages_are_a_fixed_eighth_of_the_training_pages():
    from pipeline.ml.data import im2markup_heldout, im2markup_validation

    names = [f"{i:07x}.png" for i in range(4000)]
    train = [n for n in names if not im2markup_heldout(n)]
    val = [n for n in names if im2markup_validation(n)]
    assert not any(im2markup_heldout(n) for n in val)  # the test fifth never chooses a checkpoint
    assert 0.10 < len(val) / len(train) < 0.15
    # pinned on real page names: moving the slice would silently change what earlier runs chose on
    assert im2markup_validation("60ee748793.png") and im2markup_validation("5d58861c3f.png")
    assert not im2markup_validation("66667cee5b.png")  # a training page
    assert im2markup_heldout("73fdf824d0.png") and not im2markup_validation("73fdf824d0.png")


@pytest.mark.parametrize("keep_out", [True, False])
def test_im2markup_val_keeps_its_pages_out_of_training_and_chooses_on_their_bleu(tmp_path, monkeypatch, capsys,
                                                                                 keep_out):
    from pipeline.ml import data

    _tiny_shared(tmp_path / "shared", validation_truth="1=x+x")
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    seen = {}
    real_pool, real_init = train_recognizer.printed_pool, FormulaCrops.__init__

    def pool_spy(n, texts, seed, processes, **kw):
        seen["texts"] = texts
        return real_pool(n, texts, seed, 1, **kw)

    def crops_spy(self, items, *a, **k):
        seen["items"] = [toks for _, _, toks in items]
        return real_init(self, items, *a, **k)

    monkeypatch.setattr(train_recognizer, "printed_pool", pool_spy)
    monkeypatch.setattr(FormulaCrops, "__init__", crops_spy)
    bleus = []
    real_bleu = train_recognizer.val_bleu
    monkeypatch.setattr(train_recognizer, "val_bleu", lambda *a, **k: bleus.append(real_bleu(*a, **k)) or bleus[-1])
    args = ["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--batch", "2", "--printed", "4",
            "--recombined", "4", "--ckpt-every", "1", "--encoder", "res", "--channels", "4,8,8,8", "--d-model", "16",
            "--heads", "2", "--layers", "1", "--ff", "32", "--height", "32", "--max-width", "128", "--warmup", "1",
            "--steps", "2", "--val", "1", *(["--im2markup-val"] if keep_out else [])]
    train_recognizer.main(args)
    held = normalize_tokens("1=x+x")
    assert (held in seen["items"] + seen["texts"]) is not keep_out  # neither a crop nor a typeset truth
    log = capsys.readouterr().out
    assert ("1 kept for validation" in log) is keep_out
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    if keep_out:
        # chosen on the mean of CROHME 2013 exact match and the validation pages' BLEU-4
        assert len(bleus) == 2 and "im2markup bleu" in log
        scores = [float(m) for m in re.findall(r"score ([0-9.]+)", log)]
        assert best["best_val"] == pytest.approx(max(scores), abs=1e-3)
    else:
        assert not bleus and "im2markup bleu" not in log
    exported = json.loads((tmp_path / "out" / "config.json").read_text())
    assert exported["im2markup_validation_held_out"] is keep_out
    # a run resumes only with the setting it started with: otherwise its pages would change mid-run
    other = [a for a in args if a != "--im2markup-val"] + ([] if keep_out else ["--im2markup-val"])
    with pytest.raises(SystemExit, match="resume it with the same setting"):
        train_recognizer.main([*other, "--steps", "3"])
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 2
    # weights that held the pages out may go on choosing on them; weights that read them may not
    tuned = ["--run", str(tmp_path / "tuned"), "--out", str(tmp_path / "tuned-out"), "--init", str(tmp_path / "out"),
             "--batch", "2", "--printed", "4", "--recombined", "4", "--warmup", "1", "--steps", "1", "--val", "1",
             "--im2markup-val"]
    if keep_out:
        train_recognizer.main(tuned)
        assert json.loads((tmp_path / "tuned-out" / "config.json").read_text())["im2markup_validation_held_out"]
    else:
        with pytest.raises(SystemExit, match="trained on the im2markup validation pages, so their BLEU-4 there is"):
            train_recognizer.main(tuned)
        assert not (tmp_path / "tuned").exists() and not (tmp_path / "tuned-out").exists()  # nothing left behind


def test_im2markup_val_without_validation_steps_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(SystemExit, match="give --val N as well"):
        train_recognizer.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--im2markup-val"])
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit, match="no config.json there"):
        train_recognizer.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--im2markup-val",
                               "--val", "1", "--init", str(tmp_path)])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("share", ["-0.1", "1.5"])
def test_a_substitute_share_outside_0_to_1_is_refused_before_anything_is_written(tmp_path, capsys, share):
    with pytest.raises(SystemExit):
        train_recognizer.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--substitute", share])
    assert f"--substitute is a share of the recombined formulas, from 0 to 1, not {float(share)}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="substitute is a share"):
        train_recognizer.printed_pool_jobs(2, [["x"]], 0, substitute=float(share))


def test_a_printed_pool_made_with_the_validation_pages_is_refused_by_a_run_that_keeps_them_out(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setattr(train_recognizer, "printed_pool", lambda n, *a, **k: [])
    path = tmp_path / "pool.pkl.gz"
    cached_printed_pool(path, 3, [], 0, 1)
    with pytest.raises(SystemExit, match="typeset with the im2markup validation pages' truths and this run keeps"):
        cached_printed_pool(path, 3, [], 0, 1, im2markup_val=True)
    cached_printed_pool(path, 3, [], 0, 1)  # the run it was made for still reads it


def test_a_run_initialised_from_exported_weights_starts_from_them_with_their_architecture(tmp_path, monkeypatch):
    from pipeline.ml import data, train_recognizer
    from pipeline.ml.inference import load_recognizer

    _tiny_shared(tmp_path / "shared")
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    common = ["--batch", "2", "--printed", "4", "--ckpt-every", "1", "--warmup", "1", "--steps", "1"]
    base = tmp_path / "base"
    train_recognizer.main(["--run", str(tmp_path / "run1"), "--out", str(base), *common, "--encoder", "res",
                           "--channels", "4,8,8,8", "--d-model", "16", "--heads", "2", "--layers", "1", "--ff", "32",
                           "--height", "32", "--max-width", "128"])
    start = load_recognizer(base, device="cpu", precision="float32").state_dict()
    # the architecture options given here (the defaults) are replaced by the folder's
    seen = {}
    real_load = train_recognizer.Recognizer.load_state_dict

    def spy(model, state, *a, **k):
        seen.setdefault("first", {key: v.clone() for key, v in state.items()})
        return real_load(model, state, *a, **k)

    monkeypatch.setattr(train_recognizer.Recognizer, "load_state_dict", spy)
    tuned = tmp_path / "tuned"
    train_recognizer.main(["--run", str(tmp_path / "run2"), "--out", str(tuned), "--init", str(base),
                           "--precision", "float32", *common])
    assert all(torch.equal(seen["first"][k], start[k]) for k in start)  # it started from the base weights
    ckpt = torch.load(tmp_path / "run2" / "last.pt", weights_only=False)
    assert ckpt["step"] == 1 and ckpt["config"]["d_model"] == 16 and ckpt["config"]["height"] == 32
    after = load_recognizer(tuned, device="cpu", precision="float32").state_dict()
    assert any(not torch.allclose(after[k], start[k]) for k in start if after[k].is_floating_point())


def test_distorting_symbols_moves_each_symbol_a_little_and_keeps_its_strokes_together():
    bar = np.array([[0, 0], [0, 10]], float)
    # symbol "a" is two strokes; a third stroke belongs to no symbol
    ink = Ink(traces=[bar, bar + [4, 0], bar + [30, 0], bar + [60, 0]], truth="a b",
              symbols=[("a", [0, 1]), ("b", [2])])
    rng = np.random.default_rng(3)
    out = distort_symbols(ink, rng, stretch=0.0)
    assert out.truth == "a b" and out.symbols == ink.symbols
    assert np.array_equal(ink.traces[0], bar)  # the original ink is untouched
    assert np.array_equal(out.traces[3], bar + [60, 0])  # outside any symbol: not moved
    # the two strokes of "a" move as one: same distance between them up to its scale and turn
    gap = np.linalg.norm(out.traces[1][0] - out.traces[0][0])
    assert 4 * np.exp(-0.2) - 1e-9 <= gap <= 4 * np.exp(0.2) + 1e-9
    # shifts are clipped at two standard deviations of the median symbol size (10), scale at 2 sigma
    for t_in, t_out in zip(ink.traces[:3], out.traces[:3], strict=True):
        assert np.abs(t_out.mean(axis=0) - t_in.mean(axis=0)).max() <= 0.16 * 10 + 10 * (np.exp(0.2) - 1) + 1
    assert not all(np.array_equal(a, b) for a, b in zip(ink.traces, out.traces, strict=True))


def test_stretch_changes_only_the_width_of_an_unsegmented_ink():
    stroke = np.array([[0, 0], [10, 12], [20, 0]], float)
    ink = Ink(traces=[stroke, stroke + [30, 0]])
    out = distort_symbols(ink, np.random.default_rng(0), stretch=0.3)
    x0, y0, x1, y1 = ink_bbox(out)
    assert (y0, y1) == (0.0, 12.0)
    assert 50 * np.exp(-0.3) <= x1 - x0 <= 50 * np.exp(0.3) and x1 - x0 != 50


def test_distort_share_zero_draws_the_same_samples_as_before():
    plain = FormulaCrops(_items(), _cfg(), seed=5)
    off = FormulaCrops(_items(), _cfg(), seed=5, distort=0.0)
    on = FormulaCrops(_items(), _cfg(), seed=5, distort=1.0)
    assert np.array_equal(plain[(2, 0)][0], off[(2, 0)][0])
    assert not np.array_equal(plain[(2, 0)][0], on[(2, 0)][0])
    assert np.array_equal(on[(2, 1)][0], plain[(2, 1)][0])  # printed crops are not inks: unchanged


def test_printed_pool_cache_is_made_once_and_refuses_other_settings(tmp_path, monkeypatch):
    calls = []

    def fake_pool(n, texts, seed, processes, **kw):
        calls.append(n)
        return [(np.full((8, 8 + i), 255, np.uint8), ["x"]) for i in range(n)]

    monkeypatch.setattr(train_recognizer, "printed_pool", fake_pool)
    path = tmp_path / "pool.pkl.gz"
    first = cached_printed_pool(path, 3, [], 0, 1)
    again = cached_printed_pool(path, 3, [], 0, 1)
    assert calls == [3] and [a.shape for a, _ in again] == [a.shape for a, _ in first]
    with pytest.raises(SystemExit, match="holds 3 printed crops and 0 recombined of seed 0, not 4 and 0 of seed 0"):
        cached_printed_pool(path, 4, [], 0, 1)
    with pytest.raises(SystemExit, match=r"with 0.0 of them renamed \(--substitute\), not 0.5"):
        cached_printed_pool(path, 3, [], 0, 1, substitute=0.5)
    assert not list(tmp_path.glob("*.tmp"))


def test_printed_pool_cache_of_an_earlier_format_is_refused(tmp_path):
    path = tmp_path / "pool.pkl.gz"
    with gzip.open(path, "wb") as f:  # written before the format was recorded: scripts drawn inline
        pickle.dump({"n": 3, "seed": 0, "crops": []}, f)
    with pytest.raises(SystemExit, match="printed-pool format 1, not 2"):
        cached_printed_pool(path, 3, [], 0, 1)


def test_typeset_training_truths_keep_their_scripts(monkeypatch):
    texts = [normalize_tokens(r"x_{2}+y^{3}"), normalize_tokens(r"\sum_{i=1}^{n} a_{i}")]
    jobs = printed_jobs(8, texts, seed=3)
    typeset = [src for i, (src, _, _) in enumerate(jobs) if i % 2]
    assert set(typeset) <= {" ".join(t) for t in texts} and len(set(typeset)) == 2
    wants = []
    for raw, toks in zip((r"x_{2}+y^{3}", r"\sum_{i=1}^{n} a_{i}"), texts, strict=True):
        wants.append(synth.render_mathtext(raw, size=20, font="cm"))
        assert np.array_equal(synth.render_mathtext(" ".join(toks), size=20, font="cm"), wants[-1])
    # without the rule, the space-joined tokens are what mathtext misreads: the script drawn inline
    monkeypatch.setattr(synth, "_SCRIPT_SPACE", re.compile(r"(\b\B)"))  # never matches
    for toks, want in zip(texts, wants, strict=True):
        assert not np.array_equal(synth.render_mathtext(" ".join(toks), size=20, font="cm"), want)


def test_formula_pieces_cut_only_outside_groups():
    toks = normalize_tokens(r"E = \left( a = b \right) + \frac{x=1}{2} , y_{i=0} .")
    pieces = synth.formula_pieces(toks)
    assert pieces == [["E"], ["\\left", "(", "a", "=", "b", "\\right", ")"],
                      ["\\frac", "{", "x", "=", "1", "}", "{", "2", "}"], ["y", "_", "{", "i", "=", "0", "}", "."]]


def test_recombined_formulas_are_new_well_formed_and_typeset():
    texts = [normalize_tokens(s) for s in (r"a_{1} = \frac{b}{c} .", r"\sum_{i} x_{i} \leq \sqrt{y}",
                                           r"\left[ p , q \right] = 0")]
    pieces = [p for t in texts for p in synth.formula_pieces(t)]
    rng = np.random.default_rng(0)
    made = [synth.recombined_formula(pieces, rng, max_tokens=40) for _ in range(40)]
    assert len({tuple(m) for m in made} - {tuple(t) for t in texts}) > 20
    for toks in made:
        assert 0 < len(toks) <= 40 and toks.count("{") == toks.count("}")
        assert toks.count("\\left") == toks.count("\\right") and "." not in toks[:-1]
    jobs = printed_jobs(4, texts, seed=1, pieces=pieces, recombined=3)
    assert jobs[:4] == printed_jobs(4, texts, seed=1)  # the first n do not move
    assert [font for *_, font in jobs[4:]] == ["cm"] * 3
    for src, _, _ in jobs[4:]:
        synth.render_mathtext(src, size=20, font="cm")  # typesets without error


def test_substituted_symbols_rename_each_letter_everywhere_and_keep_the_structure():
    toks = normalize_tokens(r"\begin{array}{cc} x & y \\ \alpha_{12} & \Gamma \end{array} + x^{2} = \frac{d}{dx} y")
    rng = np.random.default_rng(3)
    outs = [synth.substitute_symbols(toks, rng, share=1.0) for _ in range(20)]
    for out in outs:
        assert len(out) == len(toks)
        # structure and environment names pass unchanged; the array's column spec too
        assert out[:12] == toks[:12] and out[24:32] == toks[24:32]
        for a, b in zip(toks, out, strict=True):
            if not synth._renamable(a):
                assert a == b
            elif a.isdigit():
                assert b.isdigit()
            else:  # a letter stays a letter of its case, a Greek letter a Greek letter of its case
                assert any(a in c and b in c for c in synth._SYMBOL_CLASSES), (a, b)
        # one letter, one new name: every x of the formula becomes the same symbol
        assert len({b for a, b in zip(toks, out, strict=True) if a == "x"}) == 1
    assert len({tuple(o) for o in outs}) == 20
    assert synth.substitute_symbols(toks, rng, share=0.0) == toks


def test_renamed_recombined_formulas_keep_their_structure_and_the_other_crops():
    texts = [normalize_tokens(s) for s in (r"a_{1} = \frac{b}{c} .", r"\sum_{i} x_{i} \leq \sqrt{y}")]
    pieces = [p for t in texts for p in synth.formula_pieces(t)]
    plain = printed_jobs(4, texts, seed=1, pieces=pieces, recombined=30)
    renamed = printed_jobs(4, texts, seed=1, pieces=pieces, recombined=30, substitute=0.5)
    assert renamed[:4] == plain[:4]
    changed = 0
    for (a, seed_a, font_a), (b, seed_b, font_b) in zip(plain[4:], renamed[4:], strict=True):
        assert (seed_a, font_a) == (seed_b, font_b) and len(a.split()) == len(b.split())
        assert [t for t in a.split() if not synth._renamable(t)] == [t for t in b.split() if not synth._renamable(t)]
        changed += a != b
    assert 5 <= changed <= 25  # about half of them


def _uncalibrated_copy(folder):
    import shutil

    from pipeline.ml.inference import WEIGHTS_DIR

    shutil.copytree(WEIGHTS_DIR / "recognizer", folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("calibration")
    (folder / "config.json").write_text(json.dumps(config))


def test_exported_weights_are_calibrated_on_the_validation_inks(tmp_path, shared_data, capsys):
    from pipeline.ml import ink as inkml
    from pipeline.ml.inference import load_recognizer

    folder = tmp_path / "export"
    _uncalibrated_copy(folder)
    val = [(inkml.render_ink(ink), normalize_tokens(ink.truth))
           for _, ink in inkml.iter_inks(shared_data / "crohme" / "test-2013.tar.xz")][:60]
    train_recognizer.calibrate_export(folder, val, "cpu")
    fit = json.loads((folder / "config.json").read_text())["calibration"]["greedy"]
    assert fit["samples"] == 60 and fit["fitted_on"] == "test-2013.tar.xz" and fit["a"] > 0
    assert "greedy" in load_recognizer(folder, device="cpu").calibration
    assert "confidence calibrated on 60 validation inks" in capsys.readouterr().out


def test_weights_that_read_every_validation_ink_wrong_keep_the_sequence_probability(tmp_path, capsys):
    folder = tmp_path / "export"
    _uncalibrated_copy(folder)
    before = (folder / "config.json").read_bytes()
    val = [(synth.render_mathtext(s, size=24, font="cm"), ["\\zeta", "\\zeta", "\\zeta"]) for s in ("a+b", "x=1")]
    train_recognizer.calibrate_export(folder, val, "cpu")
    assert "confidence not calibrated: calibration needs both exact and wrong readings" in capsys.readouterr().out
    assert (folder / "config.json").read_bytes() == before


def _checkpoint(path, cfg, step, fill, held_out=False):
    model = Recognizer(cfg)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.fill_(fill)
            else:
                value.fill_(step)  # BatchNorm's batch counts
    opt = torch.optim.AdamW(model.parameters())
    train_recognizer.save(path, model, opt, cfg, step, 0, step, held_out=held_out)
    return path


def test_averaged_checkpoints_export_the_mean_weights_and_the_last_counts(tmp_path, capsys):
    from pipeline.ml.inference import load_recognizer

    cfg = _cfg(d_model=16, heads=2, layers=1, ff=32)
    paths = [_checkpoint(tmp_path / f"{step}.pt", cfg, step, fill)
             for step, fill in ((900, 0.25), (1050, 0.5), (1080, 1.5))]
    train_recognizer.main(["--average", *map(str, paths), "--out", str(tmp_path / "avg")])
    exported = json.loads((tmp_path / "avg" / "config.json").read_text())
    assert exported["averaged_steps"] == [900, 1050, 1080] and exported["trained_steps"] == 1080
    model = load_recognizer(tmp_path / "avg", device="cpu", precision="float32", decoder_weights="float32")
    floats = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    counts = [v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert floats and all(torch.allclose(v.float(), torch.full_like(v.float(), 0.75)) for v in floats.values())
    assert counts and all(int(v) == 1080 for v in counts)
    assert "exported average (step 1080" in capsys.readouterr().out


def test_checkpoints_of_other_architectures_or_held_out_pages_are_not_averaged(tmp_path):
    a = _checkpoint(tmp_path / "a.pt", _cfg(d_model=16, heads=2, layers=1, ff=32), 1, 0.1)
    wider = _checkpoint(tmp_path / "b.pt", _cfg(d_model=32, heads=2, layers=1, ff=32), 2, 0.1)
    held = _checkpoint(tmp_path / "c.pt", _cfg(d_model=16, heads=2, layers=1, ff=32), 3, 0.1, held_out=True)
    out = tmp_path / "avg"
    with pytest.raises(SystemExit, match="another architecture"):
        train_recognizer.main(["--average", str(wider), str(a), "--out", str(out)])
    with pytest.raises(SystemExit, match="differ in --im2markup-val"):
        train_recognizer.main(["--average", str(held), str(a), "--out", str(out)])
    with pytest.raises(SystemExit, match="is not a file"):
        train_recognizer.main(["--average", str(tmp_path / "missing.pt"), str(a), "--out", str(out)])
    assert not out.exists()


def test_kept_checkpoints_hold_each_step_and_can_be_averaged(tmp_path, monkeypatch, capsys):
    from pipeline.ml import data, train_recognizer

    _tiny_shared(tmp_path / "shared")
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    run = tmp_path / "run"
    train_recognizer.main(["--run", str(run), "--out", str(tmp_path / "weights"), "--batch", "2", "--printed", "4",
                           "--ckpt-every", "2", "--keep-checkpoints", "--encoder", "res", "--channels", "4,8,8,8",
                           "--d-model", "16", "--heads", "2", "--layers", "1", "--ff", "32", "--height", "32",
                           "--max-width", "128", "--warmup", "1", "--steps", "5"])
    assert sorted(p.name for p in run.glob("step-*.pt")) == ["step-2.pt", "step-4.pt", "step-5.pt"]
    kept = {n: torch.load(run / f"step-{n}.pt", weights_only=False) for n in (2, 4, 5)}
    assert [kept[n]["step"] for n in (2, 4, 5)] == [2, 4, 5]
    last = torch.load(run / "last.pt", weights_only=False)
    assert all(torch.equal(last["model"][k], kept[5]["model"][k]) for k in last["model"])
    assert not all(torch.equal(kept[2]["model"][k], kept[4]["model"][k]) for k in last["model"])
    train_recognizer.main(["--average", str(run / "step-4.pt"), str(run / "step-5.pt"), "--out", str(tmp_path / "avg")])
    assert json.loads((tmp_path / "avg" / "config.json").read_text())["averaged_steps"] == [4, 5]


def test_a_run_from_exported_sine_weights_may_read_longer_formulas_than_they_did(tmp_path, monkeypatch):
    from pipeline.ml import data, train_recognizer

    _tiny_shared(tmp_path / "shared")
    monkeypatch.setenv("MATHSET_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    common = ["--batch", "2", "--printed", "4", "--ckpt-every", "1", "--warmup", "1", "--steps", "1",
              "--precision", "float32"]
    tiny = ["--encoder", "res", "--channels", "4,8,8,8", "--d-model", "16", "--heads", "2", "--layers", "1",
            "--ff", "32", "--height", "32", "--max-width", "128"]
    for positions in ("sine", "learned"):
        train_recognizer.main(["--run", str(tmp_path / f"run-{positions}"), "--out", str(tmp_path / positions),
                               *common, *tiny, "--positions", positions])
    train_recognizer.main(["--run", str(tmp_path / "longer"), "--out", str(tmp_path / "longer-out"),
                           "--init", str(tmp_path / "sine"), "--max-len", "160", *common])
    ckpt = torch.load(tmp_path / "longer" / "last.pt", weights_only=False)
    assert ckpt["config"]["max_len"] == 160 and ckpt["config"]["d_model"] == 16
    assert json.loads((tmp_path / "longer-out" / "config.json").read_text())["max_len"] == 160
    # learned positions hold a row per position: there is nothing to read a 161st token with
    with pytest.raises(SystemExit, match="learned positions for 100 tokens"):
        train_recognizer.main(["--run", str(tmp_path / "refused"), "--out", str(tmp_path / "refused-out"),
                               "--init", str(tmp_path / "learned"), "--max-len", "160", *common])
    assert not (tmp_path / "refused" / "last.pt").exists()


def test_recombined_formulas_are_cut_at_the_length_the_pool_was_asked_for():
    pieces = [["x", "_", "{", str(i), "}", "+", "y"] * 6 for i in range(10)]  # 42 tokens each
    short = printed_jobs(0, [], 7, pieces=pieces, recombined=60)
    longer = printed_jobs(0, [], 7, pieces=pieces, recombined=60, recombined_max_tokens=250)
    assert max(len(src.split()) for src, _, _ in short) <= 150
    assert max(len(src.split()) for src, _, _ in longer) > 150
    assert max(len(src.split()) for src, _, _ in longer) <= 250


def test_a_printed_pool_of_shorter_recombined_formulas_is_refused_by_a_run_that_reads_longer_ones(tmp_path,
                                                                                                    monkeypatch):
    monkeypatch.setattr(train_recognizer, "printed_pool", lambda n, *a, **k: [])
    path = tmp_path / "pool.pkl.gz"
    cached_printed_pool(path, 3, [], 0, 1, recombined=5)
    with pytest.raises(SystemExit, match="recombined formulas of at most 150 tokens, not 250"):
        cached_printed_pool(path, 3, [], 0, 1, recombined=5, recombined_max_tokens=250)
    cached_printed_pool(path, 3, [], 0, 1, recombined=5)  # the run it was made for still reads it
