"""The recognizer's confidence as the probability that its reading is exactly right.

A reading's tokens each come with the probability the decoder gave them. Their geometric mean
(the first sequence confidence) hides the one unsure token that makes a formula wrong, and it
averaged 0.84 on the CROHME 2016 test inks, of which the committed recognizer reads a third exactly. The sequence's
log-probability (the sum of the tokens' log-probabilities) ranks wrong readings lower, and a
logistic fit of exact match on it (Platt scaling, two numbers) makes it a probability: of the
readings given 0.7, about 70% are exact. The fit is made on the validation inks (CROHME 2013),
per way of reading (greedy, beam width, test-time views: each gives its own log-probabilities),
and kept in the recognizer's ``config.json`` under ``"calibration"``::

    {"greedy": {"a": 1.23, "b": 1.54, "fitted_on": "test-2013.tar.xz", "samples": 668}, "views:trim,wide": {...}}

A way of reading without a fit gets the sequence probability itself (the product of the token
probabilities), which is a probability too, only a less honest one.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata

MIN_TOKEN_PROB = 1e-9  # a token read with probability 0 would make the log-probability -inf


@dataclass(frozen=True)
class Platt:
    """P(exact) = sigmoid(a * log-probability + b)."""

    a: float
    b: float

    def __call__(self, log_prob: float) -> float:
        return float(expit(self.a * log_prob + self.b))


def mode_key(beam_width: int = 1, views: Sequence[str] = ()) -> str:
    """The name a way of reading has in ``config.json``'s calibration."""
    if views:
        return "views:" + ",".join(sorted(views))
    return "greedy" if beam_width <= 1 else f"beam:{beam_width}"


def sequence_log_prob(token_confidences: Sequence[float]) -> float:
    """Sum of the tokens' log-probabilities (an empty reading is taken as certain to be wrong)."""
    if not token_confidences:
        return math.log(MIN_TOKEN_PROB)
    return float(sum(math.log(max(float(c), MIN_TOKEN_PROB)) for c in token_confidences))


def confidence(token_confidences: Sequence[float], calibration: dict[str, Platt] | None, mode: str) -> float:
    """P(the reading is exactly right): the fit for ``mode`` if there is one, else the sequence probability."""
    if not token_confidences:
        return 0.0
    log_prob = sequence_log_prob(token_confidences)
    fit = (calibration or {}).get(mode)
    return fit(log_prob) if fit is not None else math.exp(log_prob)


def fit_platt(log_probs: Sequence[float], exact: Sequence[bool]) -> Platt:
    """Logistic fit of ``exact`` on ``log_probs`` (maximum likelihood; scipy's BFGS).

    Raises ValueError when the outcomes are all alike: no slope can be told from them.
    """
    x = np.asarray(log_probs, dtype=np.float64)
    y = np.asarray(exact, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("one log-probability per outcome is needed")
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("calibration needs both exact and wrong readings; these are all "
                         + ("exact" if y.size and y[0] else "wrong"))
    # a scale of the log-probabilities' spread keeps BFGS well conditioned
    scale = float(np.std(x)) or 1.0

    def nll(w):
        z = w[0] * x / scale + w[1]
        p = expit(z)
        grad_z = p - y
        return float(np.sum(np.logaddexp(0.0, z) - y * z)), np.array([np.sum(grad_z * x / scale), np.sum(grad_z)])

    w = minimize(nll, np.zeros(2), jac=True, method="BFGS").x
    return Platt(a=float(w[0] / scale), b=float(w[1]))


def parse(raw, where: str = "calibration") -> dict[str, Platt]:
    """The fits in a config's ``"calibration"`` object; ValueError naming the field that is wrong."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object of fits by way of reading, e.g. {{\"greedy\": {{\"a\": .., \"b\": ..}}}}")
    fits = {}
    for mode, fit in raw.items():
        if not isinstance(fit, dict):
            raise ValueError(f"{where}.{mode} must be an object with numbers 'a' and 'b'")
        values = []
        for name in ("a", "b"):
            value = fit.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{where}.{mode}.{name} must be a finite number")
            values.append(float(value))
        if values[0] < 0:
            raise ValueError(f"{where}.{mode}.a must not be negative: a likelier reading cannot be less often right")
        fits[mode] = Platt(*values)
    return fits


def confidence_metrics(confidences: Sequence[float], exact: Sequence[bool], *, bins: int = 10,
                       review_share: float = 0.3) -> dict:
    """How well confidences tell exact readings from wrong ones.

    ``auroc``: the chance an exact reading is more confident than a wrong one (ties count half;
    None when the readings are all exact or all wrong, where it is undefined);
    ``ece``: expected calibration error over ``bins`` equal-width bins; ``brier``: mean squared
    error of the confidence as a probability; ``wrong_in_lowest``: the share of the wrong readings
    found by checking only the ``review_share`` least confident ones (the queue's order; at most
    ``review_share`` / the wrong share); ``exact_in_highest``: how many of the ``review_share`` most
    confident readings are exact (the ones a reviewer could pass quickly).
    """
    p = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(exact, dtype=bool)
    n = p.size
    out = {"samples": int(n), "exact": float(y.mean()) if n else 0.0, "mean_confidence": float(p.mean()) if n else 0.0}
    n1, n0 = int(y.sum()), int((~y).sum())
    ranks = rankdata(p)
    out["auroc"] = float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)) if n1 and n0 else None
    which = np.minimum((p * bins).astype(int), bins - 1)
    out["ece"] = float(sum(abs(p[which == k].mean() - y[which == k].mean()) * (which == k).sum()
                           for k in range(bins) if (which == k).any()) / n) if n else 0.0
    out["brier"] = float(np.mean((p - y) ** 2)) if n else 0.0
    lowest = np.argsort(p, kind="stable")[: int(round(review_share * n))]
    highest = np.argsort(-p, kind="stable")[: int(round(review_share * n))]
    pct = round(review_share * 100)
    out[f"wrong_in_lowest_{pct}pct"] = float((~y[lowest]).sum() / n0) if n0 else 0.0
    out[f"exact_in_highest_{pct}pct"] = float(y[highest].mean()) if highest.size else 0.0
    return out


def store(folder, mode: str, fit: Platt, **about) -> dict:
    """Put ``fit`` for ``mode`` into ``folder/config.json`` (other modes' fits kept), written
    whole to a temporary file and moved into place, so a reader never sees half a config."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    config.setdefault("calibration", {})[mode] = {"a": round(fit.a, 6), "b": round(fit.b, 6), **about}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=1))
    tmp.replace(path)
    return config
