"""How the recognizer runs at inference: encoder precision and layout, and the either-way decoding."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.ml import inference, synth
from pipeline.ml.inference import encoder_uses_bf16, load_recognizer
from pipeline.ml.recognizer import batch_crops, prepare_crop

SOURCES = [r"x^{2}+3x-4=0", r"\frac{a+b}{2}", r"\sqrt{y}-1", r"a_{n+1}=2a_{n}", r"\sin\theta", r"7-3=4",
           r"\int_{0}^{1}f(x)dx", r"p+q"]


@pytest.fixture(scope="module")
def crops():
    return [synth.render_mathtext(s, size=24, font="cm") for s in SOURCES]


def _batch(model, crops):
    return batch_crops([prepare_crop(c, model.cfg.height, model.cfg.max_width) for c in crops])


def test_auto_precision_uses_bfloat16_only_on_a_cpu_with_amx(monkeypatch):
    monkeypatch.delenv("MATHSET_ENCODER_PRECISION", raising=False)
    monkeypatch.setattr(inference, "cpu_has_amx_bf16", lambda: True)
    assert encoder_uses_bf16("auto", "cpu") and encoder_uses_bf16(None, "cpu")
    assert not encoder_uses_bf16("auto", "cuda")
    assert not encoder_uses_bf16("float32", "cpu")
    monkeypatch.setattr(inference, "cpu_has_amx_bf16", lambda: False)
    assert not encoder_uses_bf16(None, "cpu")
    assert encoder_uses_bf16("bfloat16", "cpu")


def test_the_environment_chooses_the_precision_when_the_caller_does_not(monkeypatch):
    monkeypatch.setattr(inference, "cpu_has_amx_bf16", lambda: True)
    monkeypatch.setenv("MATHSET_ENCODER_PRECISION", "float32")
    assert not encoder_uses_bf16(None, "cpu")
    assert encoder_uses_bf16("bfloat16", "cpu")  # an explicit choice wins
    monkeypatch.setenv("MATHSET_ENCODER_PRECISION", "half")
    with pytest.raises(ValueError, match="'half'"):
        encoder_uses_bf16(None, "cpu")


def test_amx_is_read_from_the_cpu_flags():
    flags = open("/proc/cpuinfo").read() if inference.Path("/proc/cpuinfo").exists() else ""
    assert inference.cpu_has_amx_bf16() == (" amx_bf16" in flags)


def test_loading_sets_the_encoder_up_for_the_resolved_precision():
    f32 = load_recognizer(device="cpu", precision="float32")
    bf16 = load_recognizer(device="cpu", precision="bfloat16")
    assert not f32.encoder_bf16 and bf16.encoder_bf16
    assert f32.encoder_channels_last and bf16.encoder_channels_last
    conv = f32.encoder[3].body[0].weight  # a 32-channel input: the layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_channels_last_float32_encoding_equals_the_training_layout(crops):
    plain = load_recognizer(device="cpu", precision="float32").set_encoder_precision(bf16=False,
                                                                                       channels_last=False)
    fast = load_recognizer(device="cpu", precision="float32")
    images = _batch(plain, crops)
    with torch.no_grad():
        (m1, p1), (m2, p2) = plain.encode(images), fast.encode(images)
    assert m2.dtype == torch.float32 and torch.equal(p1, p2)
    assert torch.allclose(m1, m2, atol=1e-4)


def test_bfloat16_encoder_memory_is_float32_close_to_the_float32_one_and_reads_the_same(crops):
    f32 = load_recognizer(device="cpu", precision="float32")
    bf16 = load_recognizer(device="cpu", precision="bfloat16")
    images = _batch(f32, crops)
    with torch.no_grad():
        (m1, _), (m2, _) = f32.encode(images), bf16.encode(images)
        a, b = f32.greedy(images, max_len=40), bf16.greedy(images, max_len=40)
    assert m2.dtype == torch.float32  # the decoder always reads float32
    assert not torch.equal(m1, m2)  # it really ran in bfloat16
    rel = (m1 - m2).norm() / m1.norm()
    assert rel < 0.03
    same = sum(x[0] == y[0] for x, y in zip(a, b, strict=True))
    assert same >= len(SOURCES) - 1


def test_either_way_reading_equals_decoding_the_chosen_way_up_afresh(crops):
    model = load_recognizer(device="cpu", precision="float32")
    # half the crops upside down, so both choices happen; the probe must pick the upright one
    shown = [cv2.rotate(c, cv2.ROTATE_180) if i % 2 else c for i, c in enumerate(crops)]
    prepared = [prepare_crop(c, model.cfg.height, model.cfg.max_width) for c in shown]
    upright = batch_crops(prepared)
    turned = batch_crops([np.ascontiguousarray(p[::-1, ::-1]) for p in prepared])
    with torch.no_grad():
        readings, flips = model.greedy_either_way(upright, turned, max_len=40)
        expected_flips = model.turned_reads_better(upright, turned)
        assert flips.tolist() == expected_flips.tolist()
        assert sum(flips.tolist()) >= 3 and sum(flips.tolist()) <= 5
        chosen = torch.stack([turned[i] if f else upright[i] for i, f in enumerate(flips.tolist())])
        afresh = model.greedy(chosen, max_len=40)
    for (toks, confs), (toks2, confs2) in zip(readings, afresh, strict=True):
        assert toks == toks2
        assert np.allclose(confs, confs2, atol=1e-4)


def test_either_way_reading_respects_a_bound_shorter_than_the_probe(crops):
    model = load_recognizer(device="cpu", precision="float32")
    upright = _batch(model, crops[:3])
    turned = torch.flip(upright, dims=(-2, -1))
    with torch.no_grad():
        readings, _ = model.greedy_either_way(upright, turned, max_len=3)
    assert all(len(toks) <= 4 and len(confs) == len(toks) for toks, confs in readings)


def test_the_memory_precision_follows_the_encoder_unless_chosen():
    assert load_recognizer(device="cpu", precision="bfloat16").memory_bf16
    assert not load_recognizer(device="cpu", precision="float32").memory_bf16
    model = load_recognizer(device="cpu", precision="bfloat16").set_encoder_precision(bf16=True, memory_bf16=False)
    assert model.encoder_bf16 and not model.memory_bf16


def test_a_bfloat16_memory_is_what_cross_attention_reads_and_it_reads_like_float32(crops):
    f32 = load_recognizer(device="cpu", precision="float32")
    half = load_recognizer(device="cpu", precision="float32").set_encoder_precision(bf16=False, memory_bf16=True)
    images = _batch(f32, crops)
    with torch.no_grad():
        mem, pad = f32.encode(images)
        s1, s2 = f32._decode_init(mem, pad), half._decode_init(mem, pad)
        assert s1["layers"][0]["mk"].dtype == torch.float32
        assert s2["layers"][0]["mk"].dtype == s2["mem_bias"].dtype == torch.bfloat16
        bos = torch.full((len(crops),), f32.stoi["<bos>"], dtype=torch.long)
        l1, l2 = f32._decode_next(s1, bos), half._decode_next(s2, bos)
        assert l2.dtype == torch.float32 and not torch.equal(l1, l2)
        assert ((l1 - l2).norm() / l1.norm()) < 0.02
        # padded memory columns stay masked in bfloat16: the widest crop's padding is ignored
        bias = s2["mem_bias"][:, 0, 0]
        assert pad.any() and torch.isinf(bias[pad]).all() and not bias[~pad].any()
        a, b = f32.greedy(images, max_len=40), half.greedy(images, max_len=40)
    same = sum(x[0] == y[0] for x, y in zip(a, b, strict=True))
    assert same >= len(SOURCES) - 1
