"""Formula recognizer: a small CNN encoder with 2-D positions and a Transformer decoder.

Input: a grayscale crop (255 = paper) resized to ``HEIGHT`` pixels, width kept in proportion
up to ``MAX_WIDTH`` (wider crops are squeezed). Output: normalised LaTeX tokens
(:mod:`common.latex`) with one confidence per token (the softmax probability of the chosen
token); :func:`pipeline.ml.inference.read_crops` turns them into the reading's confidence, the
probability that it is exact (:mod:`pipeline.ml.calibration`). Decoding is batched greedy search.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]


def fp16_weight_linear_available() -> bool:
    """Whether this torch build has FBGEMM's float16-weight linear (x86 CPU builds do)."""
    return (hasattr(torch, "fbgemm_linear_fp16_weight") and hasattr(torch, "fbgemm_pack_gemm_matrix_fp16")
            and "fbgemm" in torch.backends.quantized.supported_engines)


def _linear(weight: torch.Tensor, bias: torch.Tensor, *, fp16: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ weight.T + bias``; with ``fp16``, through FBGEMM with the weight packed in float16.

    A decoding step multiplies a few rows by each weight, so it reads every weight once per step:
    float16 weights halve those bytes, and FBGEMM's kernel for a few rows is 3-4x faster than
    MKL's float32 one (AMD EPYC, AVX2, 1-4 rows). Activations and sums stay float32.
    """
    if not fp16:
        return lambda x: nn.functional.linear(x, weight, bias)
    with warnings.catch_warnings():
        # deprecated in favour of torchao, but still the only float16-weight CPU kernel in torch
        # 2.13 (requirements.txt pins it): warned once per process, not per call
        warnings.simplefilter("ignore")
        packed = torch.fbgemm_pack_gemm_matrix_fp16(weight.detach().float().contiguous())
        bias = bias.detach().float()
        torch.fbgemm_linear_fp16_weight(torch.zeros(1, weight.shape[1]), packed, bias)
    return lambda x: torch.fbgemm_linear_fp16_weight(x, packed, bias)


@dataclass
class RecognizerConfig:
    """Hyper-parameters saved with the weights (``config.json``)."""

    vocab: list[str]
    height: int = 40
    max_width: int = 320
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    ff: int = 384
    max_len: int = 100
    dropout: float = 0.1
    # "learned": trained row/column/token position embeddings (the first weights);
    # "sine": fixed sinusoidal 2-D image and 1-D token positions, which attention can use from
    # step one: it learns to read far sooner on a CPU budget of a few thousand steps
    positions: str = "learned"
    channels: tuple[int, ...] = (16, 48, 96)
    # "plain": three conv-pool blocks (the first, CPU-trained weights); "res": a residual CNN
    # (stride-2 stem, then residual stages at strides 2, 4, 8, 8 with ``channels`` of four
    # widths), deep enough to separate the small symbols of a 64-pixel handwritten line
    encoder: str = "plain"

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_crop(gray: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Resize a grayscale (or RGB) crop to the model's height; float32 in [0, 1] with ink = 1."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape[:2]
    new_w = int(min(max_width, max(8, round(w * height / max(h, 1)))))
    img = cv2.resize(gray, (new_w, height), interpolation=cv2.INTER_AREA)
    return 1.0 - img.astype(np.float32) / 255.0


# Inference with a bfloat16 encoder pads a batch to a multiple of this many columns. oneDNN builds
# (and caches) a kernel per input shape; with a width per 8 columns most batches of photo crops pay
# for a new one: on a Xeon with AMX the encoder alone read varied 1-3 crop batches in 14.1 ms at
# 8-column steps and 5.7 ms at 64; end to end +4-6% photos/s (pipeline/RESULTS.md, "Third
# recombined round"). The extra columns are masked out of the decoder's attention.
INFERENCE_WIDTH_STEP = 64


def padded_width(width: int, step: int = 8) -> int:
    """``width`` rounded up to a multiple of ``step`` columns (the encoder's stride is 8)."""
    return -(-width // step) * step


def batch_crops(arrays: list[np.ndarray], *, step: int = 8, max_width: int | None = None) -> torch.Tensor:
    """Right-pad prepared crops to a common width, a multiple of ``step`` columns (at most
    ``max_width`` rounded up to 8, or the widest crop's): (B, 1, H, W)."""
    h = arrays[0].shape[0]
    widest = padded_width(max(a.shape[1] for a in arrays))
    width = padded_width(widest, step)
    if max_width is not None:
        width = max(widest, min(width, padded_width(max_width)))
    out = np.zeros((len(arrays), 1, h, width), np.float32)
    for i, a in enumerate(arrays):
        out[i, 0, :, : a.shape[1]] = a
    return torch.from_numpy(out)


def sine_table(n: int, d: int) -> torch.Tensor:
    """(n, d) sinusoidal position table (Vaswani et al.)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)
    return table


def _block(cin: int, cout: int, pool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(pool))


class _Residual(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if cin == cout
                     else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def _residual_encoder(channels: tuple[int, ...], d: int) -> nn.Sequential:
    c1, c2, c3, c4 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
        _Residual(c1, c1), nn.MaxPool2d(2),
        _Residual(c1, c2), _Residual(c2, c2), nn.MaxPool2d(2),
        _Residual(c2, c3), _Residual(c3, c3),
        _Residual(c3, c4), nn.Conv2d(c4, d, 1), nn.ReLU(inplace=True))


class Recognizer(nn.Module):
    """CNN encoder (stride 8, 2-D positions) + Transformer decoder over LaTeX tokens."""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        self.cfg = cfg
        # P(exact) fits by way of reading (pipeline.ml.calibration), from config.json's "calibration"
        self.calibration: dict = {}
        d = cfg.d_model
        if cfg.encoder == "res":
            self.encoder = _residual_encoder(tuple(cfg.channels), d)
        else:
            c1, c2, c3 = cfg.channels
            self.encoder = nn.Sequential(_block(1, c1, 2), _block(c1, c2, 2), _block(c2, c3, 2),
                                         nn.Conv2d(c3, d, 3, padding=1), nn.ReLU(inplace=True))
        self.sine = cfg.positions == "sine"
        if self.sine:
            # half the channels encode the row, half the column; buffers, not weights
            h, w = cfg.height // 8 + 1, cfg.max_width // 8 + 1
            self.register_buffer("row_pe", sine_table(h, d // 2), persistent=False)
            self.register_buffer("col_pe", sine_table(w, d // 2), persistent=False)
            self.register_buffer("tok_pe", sine_table(cfg.max_len + 2, d), persistent=False)
        else:
            self.row = nn.Embedding(cfg.height // 8 + 1, d)
            self.col = nn.Embedding(cfg.max_width // 8 + 1, d)
            self.pos = nn.Embedding(cfg.max_len + 2, d)
        self.embed = nn.Embedding(len(cfg.vocab), d)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, len(cfg.vocab))
        self.stoi = {t: i for i, t in enumerate(cfg.vocab)}
        # inference settings (:meth:`set_encoder_precision`); training leaves them off
        self.encoder_bf16 = False
        self.encoder_channels_last = False
        self.memory_bf16 = False
        self.decoder_fp16 = False  # :meth:`set_decoder_weights`
        self._steps: tuple | None = None  # (what they were built from, _step_weights())

    # -- encoding -------------------------------------------------------------------------------
    def set_encoder_precision(self, *, bf16: bool, channels_last: bool = True,
                              memory_bf16: bool | None = None) -> Recognizer:
        """Run the CNN encoder in channels-last layout and, with ``bf16``, in bfloat16 autocast.

        For inference on a CPU: oneDNN's convolutions are ~1.3x faster channels-last, and on a CPU
        with AMX (Intel Sapphire Rapids and later) bfloat16 ones ~4x faster than float32. With
        ``memory_bf16`` (default: ``bf16``) the decoder's cross-attention reads the memory's keys
        and values in bfloat16; the rest of the decoder stays float32 (its products on a few rows
        are too small to gain).
        """
        self.encoder_bf16 = bf16
        self.encoder_channels_last = channels_last
        self.memory_bf16 = bf16 if memory_bf16 is None else memory_bf16
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        return self

    def set_decoder_weights(self, *, fp16: bool) -> Recognizer:
        """Multiply a decoding step's rows by float16 copies of the decoder's weights (CPU only).

        The weights are rounded to float16 (relative error ~2e-4, far finer than bfloat16's ~4e-3)
        and packed for FBGEMM once; the model's own float32 parameters are left as they are, so
        training and the teacher-forced ``forward`` are unaffected.
        """
        self.decoder_fp16 = fp16 and fp16_weight_linear_available()
        self._steps = None
        return self

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,1,H,W) → memory (B, h*w, d) and its padding mask (True = padding column)."""
        x = images.contiguous(memory_format=torch.channels_last) if self.encoder_channels_last else images
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.encoder_bf16):
            feats = self.encoder(x).float()                # B, d, h, w
        b, d, h, w = feats.shape
        if self.sine:
            pe = torch.cat([self.row_pe[:h, None, :].expand(h, w, d // 2),
                            self.col_pe[:w][None, :, :].expand(h, w, d // 2)], -1)
            mem = feats.permute(0, 2, 3, 1) + pe               # B, h, w, d
        else:
            rows = self.row(torch.arange(h, device=images.device))[:, None, :]
            cols = self.col(torch.arange(w, device=images.device).clamp(max=self.col.num_embeddings - 1))[None, :, :]
            mem = feats.permute(0, 2, 3, 1) + rows + cols      # B, h, w, d
        # a column is padding when the input had no pixels there (all-zero after right-padding)
        col_has_ink = images.amax(dim=2).squeeze(1)        # B, W
        valid_w = (col_has_ink.flip(-1).cumsum(-1).flip(-1) > 0)  # True up to the last inked column
        valid = nn.functional.max_pool1d(valid_w.float()[:, None, :], 8, 8)[:, 0, :w] > 0
        valid[:, 0] = True
        pad = ~valid[:, None, :].expand(b, h, w).reshape(b, h * w)
        return mem.reshape(b, h * w, d), pad

    def _decode_step(self, tokens: torch.Tensor, mem: torch.Tensor, mem_pad: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        if self.sine:
            x = self.embed(tokens) + self.tok_pe[:n][None]
        else:
            x = self.embed(tokens) + self.pos(torch.arange(n, device=tokens.device))[None]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=tokens.device), 1)
        y = self.decoder(x, mem, tgt_mask=causal, memory_key_padding_mask=mem_pad)
        return self.out(self.norm(y))

    # -- incremental decoding -------------------------------------------------------------------
    # Re-running the decoder over the whole prefix at every step costs O(n²) token passes and
    # re-projects the image memory each time; at inference each step only needs the new token's
    # row. These helpers compute exactly what nn.TransformerDecoder (norm_first, eval mode)
    # computes for the last position, with the memory's keys/values projected once and the
    # self-attention keys/values of earlier positions kept.
    def _kv_split(self, attn: nn.MultiheadAttention, x: torch.Tensor, which: slice) -> torch.Tensor:
        w, bias = attn.in_proj_weight[which], attn.in_proj_bias[which]
        b, n, d = x.shape
        h = attn.num_heads
        return nn.functional.linear(x, w, bias).reshape(b, n, h, d // h).transpose(1, 2)  # B, heads, n, dh

    def _decode_init(self, mem: torch.Tensor, mem_pad: torch.Tensor) -> dict:
        d = mem.shape[-1]
        layers = []
        for layer in self.decoder.layers:
            att = layer.multihead_attn
            # contiguous: every step reads all of them, ~1.3x faster than through the transposed view
            layers.append({"mk": self._kv_split(att, mem, slice(d, 2 * d)).contiguous(),
                           "mv": self._kv_split(att, mem, slice(2 * d, 3 * d)).contiguous(), "sk": None, "sv": None})
        # additive attention mask over the memory (0 or -inf), built once instead of every step
        bias = torch.zeros(mem_pad.shape, dtype=torch.float32, device=mem.device).masked_fill_(mem_pad, float("-inf"))
        if self.memory_bf16:
            # the memory's keys and values are what a step reads most (3 layers x 2 x B x 8 rows x
            # W/8 columns x d): in bfloat16 cross-attention reads half the bytes, ~1.7x faster
            for c in layers:
                c["mk"], c["mv"] = c["mk"].bfloat16(), c["mv"].bfloat16()
            bias = bias.bfloat16()
        return {"layers": layers, "mem_bias": bias[:, None, None, :], "n": 0, "w": self._step_weights()}

    def _step_weights(self) -> tuple[list[tuple], Callable]:
        """Per decoder layer, what one decoding step uses, sliced out of the modules once; and the
        output head (final norm and vocabulary product).

        A step is ~25 small matrix products on a few rows; on a CPU the per-call overhead of
        module calls and of re-slicing ``in_proj_weight`` every step costs as much as the products.
        Built again only when a parameter changed since (training updates them in place, which
        bumps their version counters) or the weights' precision did.
        """
        params = list(self.decoder.parameters()) + [self.norm.weight, self.norm.bias, self.out.weight, self.out.bias]
        fp16 = self.decoder_fp16 and self.out.weight.device.type == "cpu"
        key = (fp16, tuple((p.data_ptr(), p._version) for p in params))
        if self._steps is not None and self._steps[0] == key:
            return self._steps[1]
        d = self.cfg.d_model
        layers = []
        for layer in self.decoder.layers:
            sa, ca = layer.self_attn, layer.multihead_attn
            layers.append((layer.norm1.weight, layer.norm1.bias, layer.norm1.eps,
                           _linear(sa.in_proj_weight, sa.in_proj_bias, fp16=fp16),
                           _linear(sa.out_proj.weight, sa.out_proj.bias, fp16=fp16),
                           layer.norm2.weight, layer.norm2.bias, layer.norm2.eps,
                           _linear(ca.in_proj_weight[:d], ca.in_proj_bias[:d], fp16=fp16),
                           _linear(ca.out_proj.weight, ca.out_proj.bias, fp16=fp16),
                           layer.norm3.weight, layer.norm3.bias, layer.norm3.eps,
                           _linear(layer.linear1.weight, layer.linear1.bias, fp16=fp16),
                           _linear(layer.linear2.weight, layer.linear2.bias, fp16=fp16),
                           layer.activation))
        out = _linear(self.out.weight, self.out.bias, fp16=fp16)
        norm = self.norm

        def head(x: torch.Tensor) -> torch.Tensor:
            return out(nn.functional.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps))

        self._steps = (key, (layers, head))
        return layers, head

    def _decode_next(self, state: dict, tok: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) for the position after ``tok`` (B,), given the state of the earlier ones."""
        f = nn.functional
        n = state["n"]
        pe = self.tok_pe[n] if self.sine else self.pos.weight[n]
        x = f.embedding(tok, self.embed.weight) + pe          # B, d: one row per sequence
        b, d = x.shape
        h = self.cfg.heads
        layers, head = state["w"]
        for c, (n1w, n1b, n1e, qkv, so, n2w, n2b, n2e, cq, co, n3w, n3b, n3e, l1, l2, act) in zip(
                state["layers"], layers, strict=True):
            # self-attention: one product for the new row's query, key and value
            q, k, v = qkv(f.layer_norm(x, (d,), n1w, n1b, n1e)).view(b, 3, h, 1, d // h).unbind(1)
            c["sk"] = k if c["sk"] is None else torch.cat([c["sk"], k], 2)
            c["sv"] = v if c["sv"] is None else torch.cat([c["sv"], v], 2)
            x = x + so(f.scaled_dot_product_attention(q, c["sk"], c["sv"]).reshape(b, d))
            q = cq(f.layer_norm(x, (d,), n2w, n2b, n2e)).view(b, h, 1, d // h)
            y = f.scaled_dot_product_attention(q.to(c["mk"].dtype), c["mk"], c["mv"], attn_mask=state["mem_bias"])
            x = x + co(y.reshape(b, d).float())
            x = x + l2(act(l1(f.layer_norm(x, (d,), n3w, n3b, n3e))))
        state["n"] = n + 1
        return head(x)

    @staticmethod
    def _decode_reorder(state: dict, src: torch.Tensor) -> None:
        # beams only move within their image's group, whose memory rows are identical: only the
        # self-attention cache follows them
        for c in state["layers"]:
            c["sk"], c["sv"] = c["sk"][src], c["sv"][src]

    def forward(self, images: torch.Tensor, tokens_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for ``tokens_in`` (starting with BOS)."""
        mem, pad = self.encode(images)
        return self._decode_step(tokens_in, mem, pad)

    # -- tokens ---------------------------------------------------------------------------------
    def encode_tokens(self, toks: list[str]) -> list[int]:
        unk = self.stoi[UNK]
        return [self.stoi[BOS]] + [self.stoi.get(t, unk) for t in toks[: self.cfg.max_len]] + [self.stoi[EOS]]

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int | None = None) -> list[tuple[list[str], list[float]]]:
        """Batched greedy decoding: per image, (tokens, per-token confidences)."""
        self.eval()
        mem, pad = self.encode(images)
        return self._greedy_from(mem, pad, self._len_bound(max_len))

    def _len_bound(self, max_len: int | None) -> int:
        # the token position table holds cfg.max_len + 2 rows: a longer search has no positions
        return min(max_len or self.cfg.max_len, self.cfg.max_len)

    def _greedy_from(self, mem: torch.Tensor, pad: torch.Tensor, max_len: int,
                     views: int = 1) -> list[tuple[list[str], list[float]]]:
        b = mem.shape[0] // views
        state = self._decode_init(mem, pad)
        ids: list[list[int]] = [[] for _ in range(b)]
        probs: list[list[float]] = [[] for _ in range(b)]
        bos = torch.full((b,), self.stoi[BOS], dtype=torch.long, device=mem.device)
        self._greedy_run(state, list(range(b)), bos, ids, probs, max_len + 1, views=views)
        return [self._strip(ids[i], probs[i]) for i in range(b)]

    def _greedy_run(self, state: dict, alive: list[int], last: torch.Tensor, ids: list[list[int]],
                    probs: list[list[float]], steps: int, views: int = 1) -> tuple[list[int], torch.Tensor]:
        """Advance greedy decoding of the rows ``alive`` by up to ``steps`` tokens, appending to
        ``ids``/``probs``; returns the rows still going and their last tokens (state row order).

        With ``views`` > 1 the state holds that many pictures of each row, view-major: a step takes
        the token with the highest mean log-probability over the views, its confidence their mean
        probability, and every view takes it (:meth:`greedy_views`).
        """
        # a decoding step costs in proportion to rows x memory length: rows that have ended are
        # dropped from the batch instead of being carried along to the longest reading's end
        eos = self.stoi[EOS]
        for _ in range(steps):
            if not alive:
                break
            n = len(alive)
            if views == 1:
                p, nxt = self._decode_next(state, last).softmax(-1).max(-1)
            else:
                logp = self._decode_next(state, last.repeat(views)).log_softmax(-1).view(views, n, -1)
                nxt = logp.mean(0).argmax(-1)
                p = logp.gather(2, nxt[None, :, None].expand(views, n, 1)).exp().mean(0)[:, 0]
            for row, t, q in zip(alive, nxt.tolist(), p.tolist(), strict=True):
                ids[row].append(t)
                probs[row].append(q)
            going = nxt != eos
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                # each view's rows of the formulas still going
                self._decode_select(state, (keep[None, :] + torch.arange(views, device=keep.device)[:, None] * n)
                                    .reshape(-1))
                alive = [alive[k] for k in keep.tolist()]
                nxt = nxt[keep]
            last = nxt
        return alive, last

    @staticmethod
    def _decode_select(state: dict, keep: torch.Tensor) -> None:
        """Keep only the rows ``keep`` of a decoding state (memory, its mask and the caches)."""
        state["mem_bias"] = state["mem_bias"][keep]
        for c in state["layers"]:
            for key in ("mk", "mv", "sk", "sv"):
                if c[key] is not None:
                    c[key] = c[key][keep]

    @torch.no_grad()
    def turned_reads_better(self, upright: torch.Tensor, turned: torch.Tensor, probe: int = 8) -> torch.Tensor:
        """Per image, True when its 180°-turned version reads more confidently than the upright one.

        A detector's corner order can put a formula's top at the bottom (its upper-half map is
        unsure on rotated photos). Both batches (same shape) are encoded together and decoded
        greedily for ``probe`` tokens; the mean log-probability of those tokens decides. On 171
        formulas of validation photos (seeds 20,000,000+) this picks the right way up for 77%
        against the detector's 52%, as well as comparing whole readings does.
        """
        self.eval()
        mem, pad = self.encode(torch.cat([upright, turned]))
        flips, _ = self._probe_both_ways(mem, pad, upright.shape[0], self._len_bound(probe))
        return flips

    def _probe_both_ways(self, mem: torch.Tensor, pad: torch.Tensor, b: int, probe: int):
        """Greedy-decode ``probe`` + 1 steps of rows 0..b-1 (upright) and b..2b-1 (turned).

        Returns per image whether the turned way reads better (the geometric mean of the probe
        tokens' probabilities, the mean log-probability's order), and the decoding as it stands
        (state, rows still going, their last tokens, tokens and probabilities so far) for
        :meth:`greedy_either_way` to go on from.
        """
        state = self._decode_init(mem, pad)
        ids: list[list[int]] = [[] for _ in range(2 * b)]
        probs: list[list[float]] = [[] for _ in range(2 * b)]
        bos = torch.full((2 * b,), self.stoi[BOS], dtype=torch.long, device=mem.device)
        alive, last = self._greedy_run(state, list(range(2 * b)), bos, ids, probs, probe + 1)
        s = torch.tensor([sequence_confidence(self._strip(ids[r], probs[r])[1]) for r in range(2 * b)])
        return s[b:] > s[:b], (state, alive, last, ids, probs)

    @torch.no_grad()
    def greedy_either_way(self, upright: torch.Tensor, turned: torch.Tensor, max_len: int | None = None,
                          probe: int = 8) -> tuple[list[tuple[list[str], list[float]]], torch.Tensor]:
        """Greedy readings of whichever way up reads better (:meth:`turned_reads_better`), and the choice.

        One encoder pass over both batches and one decoding state: both ways up are decoded for
        the probe's tokens, then only the chosen rows go on, from where the probe left them (the
        same readings as decoding the chosen rows afresh, without decoding their start twice).
        """
        self.eval()
        b = upright.shape[0]
        max_len, probe = self._len_bound(max_len), self._len_bound(probe)
        mem, pad = self.encode(torch.cat([upright, turned]))
        flips, (state, alive, last, ids, probs) = self._probe_both_ways(mem, pad, b, probe)
        chosen = {i + b * int(f) for i, f in enumerate(flips.tolist())}
        keep = [k for k, row in enumerate(alive) if row in chosen]
        if len(keep) < len(alive):
            keep_t = torch.tensor(keep, dtype=torch.long, device=mem.device)
            self._decode_select(state, keep_t)
            alive, last = [alive[k] for k in keep], last[keep_t]
        self._greedy_run(state, alive, last, ids, probs, max_len + 1 - (probe + 1))
        rows = [i + b * int(f) for i, f in enumerate(flips.tolist())]
        # a probe longer than the reading's bound decoded past it: cut to what max_len allows
        return [self._strip(ids[r][: max_len + 1], probs[r][: max_len + 1]) for r in rows], flips

    @torch.no_grad()
    def greedy_views(self, images: torch.Tensor, views: int,
                     max_len: int | None = None) -> list[tuple[list[str], list[float]]]:
        """Greedy decoding of ``views`` pictures of each formula as one: test-time augmentation.

        ``images`` holds ``views`` batches of the same ``b`` formulas one after the other (view
        0's b rows, then view 1's...). Every step averages the views' log-probabilities and all
        views of a formula take that token, so the reading is the one the views agree on rather
        than the most confident single view's (on the CROHME 2013 validation inks, averaging
        beat picking the most confident view and a vote). A token's confidence is the views' mean
        probability of it. ``views=1`` is :meth:`greedy`.
        """
        views = max(views, 1)
        if images.shape[0] % views:
            raise ValueError(f"{images.shape[0]} rows are not {views} views of the same formulas")
        self.eval()
        mem, pad = self.encode(images)
        return self._greedy_from(mem, pad, self._len_bound(max_len), views)

    def _strip(self, ids: list[int], probs: list[float]) -> tuple[list[str], list[float]]:
        eos = self.stoi[EOS]
        toks, confs = [], []
        for tid, pr in zip(ids, probs, strict=False):
            if tid == eos:
                break
            toks.append(self.cfg.vocab[tid])
            confs.append(float(pr))
        return toks, confs

    @torch.no_grad()
    def beam(self, images: torch.Tensor, width: int = 4, max_len: int | None = None,
             length_alpha: float = 0.6) -> list[tuple[list[str], list[float]]]:
        """Batched beam search: ``width`` hypotheses per image, all images decoded together.

        A finished hypothesis keeps its score (it may only extend with EOS at no cost); the
        winner maximises log-probability / ((5 + length) / 6) ** alpha (GNMT's length penalty),
        so short readings are not preferred merely for having fewer factors. Per-token
        confidences are the model's probabilities of the chosen tokens, as in :meth:`greedy`.
        """
        if width <= 1:
            return self.greedy(images, max_len)
        self.eval()
        max_len = self._len_bound(max_len)
        mem, pad = self.encode(images)
        b, k, dev = images.shape[0], width, images.device
        mem, pad = mem.repeat_interleave(k, 0), pad.repeat_interleave(k, 0)
        eos = self.stoi[EOS]
        seq = torch.full((b * k, 1), self.stoi[BOS], dtype=torch.long, device=dev)
        probs = torch.zeros((b * k, 0), device=dev)
        scores = torch.full((b, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0  # one live hypothesis at the start, not k copies of it
        done = torch.zeros(b * k, dtype=torch.bool, device=dev)
        lengths = torch.zeros(b * k, device=dev)
        state = self._decode_init(mem, pad)
        for _ in range(max_len + 1):
            logp = self._decode_next(state, seq[:, -1]).log_softmax(-1)          # b*k, V
            v = logp.shape[-1]
            frozen = torch.full_like(logp, float("-inf"))
            frozen[:, eos] = 0.0
            logp = torch.where(done[:, None], frozen, logp)
            cand = (scores.reshape(b * k, 1) + logp).reshape(b, k * v)
            scores, idx = cand.topk(k, dim=-1)                                     # b, k
            src = (idx // v + torch.arange(b, device=dev)[:, None] * k).reshape(-1)
            tok = (idx % v).reshape(-1)
            chosen = logp[src, tok]
            seq = torch.cat([seq[src], tok[:, None]], 1)
            self._decode_reorder(state, src)
            probs = torch.cat([probs[src], chosen.exp()[:, None]], 1)
            lengths = lengths[src] + (~done[src]).float()
            done = done[src] | (tok == eos)
            if bool(done.all()):
                break
        penalty = ((5.0 + lengths) / 6.0) ** length_alpha
        best = (scores.reshape(-1) / penalty).reshape(b, k).argmax(-1) + torch.arange(b, device=dev) * k
        return [self._strip(seq[i, 1:].tolist(), probs[i].tolist()) for i in best.tolist()]


def sequence_confidence(confs: list[float]) -> float:
    """Geometric mean of token confidences (1.0 for an empty sequence is wrong: use 0).

    Used to compare two readings of one crop's first tokens (which way up); a reading's own
    confidence is :func:`pipeline.ml.calibration.confidence`."""
    if not confs:
        return 0.0
    return float(math.exp(sum(math.log(max(c, 1e-9)) for c in confs) / len(confs)))
