"""Formula recognizer: a small CNN encoder with 2-D positions and a Transformer decoder.

Input: a grayscale crop (255 = paper) resized to ``HEIGHT`` pixels, width kept in proportion
up to ``MAX_WIDTH`` (wider crops are squeezed). Output: normalised LaTeX tokens
(:mod:`common.latex`) with one confidence per token (the softmax probability of the chosen
token) and a sequence confidence (their geometric mean). Decoding is batched greedy search.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]


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


def batch_crops(arrays: list[np.ndarray]) -> torch.Tensor:
    """Right-pad prepared crops to a common width: (B, 1, H, W)."""
    h = arrays[0].shape[0]
    width = max(a.shape[1] for a in arrays)
    width = int(math.ceil(width / 8) * 8)
    out = np.zeros((len(arrays), 1, h, width), np.float32)
    for i, a in enumerate(arrays):
        out[i, 0, :, : a.shape[1]] = a
    return torch.from_numpy(out)


def _block(cin: int, cout: int, pool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(pool))


class Recognizer(nn.Module):
    """CNN encoder (stride 8, 2-D learned positions) + Transformer decoder over LaTeX tokens."""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoder = nn.Sequential(_block(1, 16, 2), _block(16, 48, 2), _block(48, 96, 2),
                                     nn.Conv2d(96, d, 3, padding=1), nn.ReLU(inplace=True))
        self.row = nn.Embedding(cfg.height // 8 + 1, d)
        self.col = nn.Embedding(cfg.max_width // 8 + 1, d)
        self.embed = nn.Embedding(len(cfg.vocab), d)
        self.pos = nn.Embedding(cfg.max_len + 2, d)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, len(cfg.vocab))
        self.stoi = {t: i for i, t in enumerate(cfg.vocab)}

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,1,H,W) → memory (B, h*w, d) and its padding mask (True = padding column)."""
        feats = self.encoder(images)                       # B, d, h, w
        b, d, h, w = feats.shape
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
        x = self.embed(tokens) + self.pos(torch.arange(n, device=tokens.device))[None]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=tokens.device), 1)
        y = self.decoder(x, mem, tgt_mask=causal, memory_key_padding_mask=mem_pad)
        return self.out(self.norm(y))

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
        max_len = max_len or self.cfg.max_len
        mem, pad = self.encode(images)
        b = images.shape[0]
        seq = torch.full((b, 1), self.stoi[BOS], dtype=torch.long, device=images.device)
        probs = torch.zeros((b, 0), device=images.device)
        done = torch.zeros(b, dtype=torch.bool, device=images.device)
        eos = self.stoi[EOS]
        for _ in range(max_len + 1):
            logits = self._decode_step(seq, mem, pad)[:, -1]
            p, nxt = logits.softmax(-1).max(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            probs = torch.cat([probs, p[:, None]], 1)
            done |= nxt == eos
            if bool(done.all()):
                break
        out = []
        for i in range(b):
            toks, confs = [], []
            for tid, pr in zip(seq[i, 1:].tolist(), probs[i].tolist(), strict=False):
                if tid == eos:
                    break
                toks.append(self.cfg.vocab[tid])
                confs.append(float(pr))
            out.append((toks, confs))
        return out


def sequence_confidence(confs: list[float]) -> float:
    """Geometric mean of token confidences (1.0 for an empty sequence is wrong: use 0)."""
    if not confs:
        return 0.0
    return float(math.exp(sum(math.log(max(c, 1e-9)) for c in confs) / len(confs)))
