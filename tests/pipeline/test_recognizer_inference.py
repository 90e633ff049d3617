"""How the recognizer runs at inference: encoder precision and layout, and the either-way decoding."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.ml import inference, synth
from pipeline.ml.inference import decoder_uses_fp16, encoder_uses_bf16, load_recognizer
from pipeline.ml.recognizer import batch_crops, fp16_weight_linear_available, prepare_crop

needs_fbgemm = pytest.mark.skipif(not fp16_weight_linear_available(),
                                  reason="this torch build has no FBGEMM float16-weight kernel")

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


def test_auto_decoder_weights_are_float16_on_a_cpu_with_the_fbgemm_kernel(monkeypatch):
    monkeypatch.delenv("MATHSET_DECODER_WEIGHTS", raising=False)
    assert decoder_uses_fp16(None, "cpu") == fp16_weight_linear_available()
    assert not decoder_uses_fp16("auto", "cuda") and not decoder_uses_fp16("float16", "cuda")
    assert not decoder_uses_fp16("float32", "cpu")
    monkeypatch.setenv("MATHSET_DECODER_WEIGHTS", "float32")
    assert not decoder_uses_fp16(None, "cpu")
    monkeypatch.setenv("MATHSET_DECODER_WEIGHTS", "int8")
    with pytest.raises(ValueError, match="'int8'"):
        decoder_uses_fp16(None, "cpu")


def _count_fp16_products(monkeypatch) -> list[int]:
    calls = [0]
    real = torch.fbgemm_linear_fp16_weight

    def counting(*args):
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(torch, "fbgemm_linear_fp16_weight", counting)
    return calls


@needs_fbgemm
def test_float16_decoder_weights_read_the_committed_model_as_float32_does(crops, monkeypatch):
    f32 = load_recognizer(device="cpu", precision="float32", decoder_weights="float32")
    f16 = load_recognizer(device="cpu", precision="float32", decoder_weights="float16")
    assert f16.decoder_fp16 and not f32.decoder_fp16
    images = _batch(f32, crops)
    calls = _count_fp16_products(monkeypatch)
    with torch.no_grad():
        a = f32.greedy(images, max_len=40)
        assert calls[0] == 0
        b = f16.greedy(images, max_len=40)
    steps = max(len(toks) for toks, _ in b)
    assert calls[0] >= 19 * steps  # 6 products in each of 3 layers and the head, every step
    # the committed weights are stored in float16: packing them so loses nothing
    assert [t for t, _ in a] == [t for t, _ in b]
    assert all(np.allclose(c1, c2, atol=1e-4) for (_, c1), (_, c2) in zip(a, b, strict=True))


@needs_fbgemm
def test_float32_weights_rounded_to_float16_decode_within_rounding(crops):
    f32 = load_recognizer(device="cpu", precision="float32", decoder_weights="float32")
    f16 = load_recognizer(device="cpu", precision="float32", decoder_weights="float16")
    torch.manual_seed(0)
    with torch.no_grad():  # weights float16 cannot hold, as a model team's float32 upload has
        for layer in f32.decoder.layers:
            layer.linear1.weight.add_(torch.randn_like(layer.linear1.weight) * 1e-3)
        for p32, p16 in zip(f32.parameters(), f16.parameters(), strict=True):
            p16.copy_(p32)
        images = _batch(f32, crops)
        mem, pad = f32.encode(images)
        s1, s2 = f32._decode_init(mem, pad), f16._decode_init(mem, pad)
        bos = torch.full((len(crops),), f32.stoi["<bos>"], dtype=torch.long)
        l1, l2 = f32._decode_next(s1, bos), f16._decode_next(s2, bos)
    assert not torch.equal(l1, l2)
    assert ((l1 - l2).norm() / l1.norm()) < 2e-3


def test_decoding_follows_weights_changed_in_place_as_training_does(crops):
    for weights in ("float32", "float16"):
        model = load_recognizer(device="cpu", precision="float32", decoder_weights=weights)
        images = _batch(model, crops[:3])
        with torch.no_grad():
            mem, pad = model.encode(images)
            bos = torch.full((3,), model.stoi["<bos>"], dtype=torch.long)
            before = model._decode_next(model._decode_init(mem, pad), bos)
            model.out.bias.add_(torch.arange(len(model.cfg.vocab), dtype=torch.float32))
            model.decoder.layers[1].linear2.weight.mul_(0.5)
            after = model._decode_next(model._decode_init(mem, pad), bos)
            full = model._decode_step(bos[:, None], mem, pad)[:, 0]
        assert not torch.allclose(before, after, atol=1e-2)
        assert torch.allclose(after, full, atol=1e-3, rtol=1e-4)


def test_crops_are_batched_by_similar_width_and_never_past_the_batch_size():
    widths = [300, 40, 100, 52, 45, 1000, 110, 120, 41, 390]
    batches = inference.width_batches(widths, 3, max_ratio=1.3)
    assert sorted(i for b in batches for i in b) == list(range(len(widths)))
    assert all(len(b) <= 3 for b in batches)
    for b in batches:
        ws = [widths[i] for i in b]
        assert ws == sorted(ws) and max(ws) <= 1.3 * min(ws)
    assert [[widths[i] for i in b] for b in batches] == [[40, 41, 45], [52], [100, 110, 120], [300, 390], [1000]]
    assert inference.width_batches([], 4) == []
    # no ratio bound: plain width order in batch_size slices
    assert [len(b) for b in inference.width_batches(widths, 4, max_ratio=float("inf"))] == [4, 4, 2]


def test_reading_in_width_batches_equals_reading_each_crop_alone(crops):
    model = load_recognizer(device="cpu", precision="float32")
    together = inference.read_crops(model, crops, batch_size=8)
    alone = [inference.read_crops(model, [c], batch_size=1)[0] for c in crops]
    assert [r.tokens for r in together] == [r.tokens for r in alone]


def test_batches_are_padded_to_the_requested_column_step_but_not_past_the_widest_allowed():
    narrow, wide = np.ones((64, 100), np.float32), np.ones((64, 1000), np.float32)
    assert batch_crops([narrow]).shape[-1] == 104
    assert batch_crops([narrow], step=64).shape[-1] == 128
    assert batch_crops([narrow, wide], step=64, max_width=1024).shape[-1] == 1024
    assert batch_crops([np.ones((64, 1020), np.float32)], step=64, max_width=1020).shape[-1] == 1024
    padded = batch_crops([narrow], step=64)
    assert padded[0, 0, :, :100].eq(1).all() and padded[0, 0, :, 100:].eq(0).all()


@pytest.mark.parametrize("precision, step", [("bfloat16", 64), ("float32", 8)])
def test_a_bfloat16_encoder_reads_batches_in_wider_column_steps(crops, precision, step, monkeypatch):
    model = load_recognizer(device="cpu", precision=precision)
    widths, limits = [], []
    encode, greedy = model.encode, model.greedy

    def spy_encode(images):
        widths.append(images.shape[-1])
        return encode(images)

    def spy_greedy(images, max_len=None, **kwargs):
        limits.append(max_len)
        return greedy(images, max_len, **kwargs)

    monkeypatch.setattr(model, "encode", spy_encode)
    monkeypatch.setattr(model, "greedy", spy_greedy)
    prepared = [prepare_crop(c, model.cfg.height, model.cfg.max_width) for c in crops]
    readings = inference.read_crops(model, crops, batch_size=4)
    assert len(readings) == len(crops) and widths
    assert all(w % step == 0 for w in widths)
    if step == 64:
        assert any(w % 8 == 0 and w % 64 for w in [p.shape[1] + (-p.shape[1]) % 8 for p in prepared])
    # the decoding length limit follows the crops' own width, not the padding
    widest = max(p.shape[1] + (-p.shape[1]) % 8 for p in prepared)
    assert max(limits) <= min(model.cfg.max_len, widest // 2 + 10)
