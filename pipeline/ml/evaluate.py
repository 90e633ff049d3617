"""Recognizer and detector metrics, shared by the management commands and ``bench/``.

Recognizer: exact match, match within 1 and 2 token edits, mean normalised token edit
distance (all after :func:`common.latex.normalize`) and corpus BLEU-4 (sacrebleu on the
space-separated normalised tokens, no further tokenisation), reported in [0, 1].
Detector: precision, recall, F1 of quads matched one-to-one at IoU >= 0.5 (Hungarian
assignment on polygon IoU, shapely) and the mean IoU of the matched pairs.
"""
from __future__ import annotations

import numpy as np
from rapidfuzz.distance import Levenshtein
from scipy.optimize import linear_sum_assignment
from shapely.geometry import Polygon

from common.latex import normalize_tokens


def recognizer_metrics(pairs: list[tuple[str | list[str], str | list[str]]]) -> tuple[dict, list[dict]]:
    """(summary, per-sample rows) for (prediction, truth) pairs; strings are normalised, lists taken as tokens."""
    import sacrebleu

    rows = []
    hyps, refs = [], []
    for pred, truth in pairs:
        p = pred if isinstance(pred, list) else normalize_tokens(pred)
        t = truth if isinstance(truth, list) else normalize_tokens(truth)
        edits = Levenshtein.distance(p, t)
        longest = max(len(p), len(t)) or 1
        rows.append({"prediction": " ".join(p), "truth": " ".join(t), "edits": edits,
                     "edit_distance": edits / longest, "exact": edits == 0})
        hyps.append(" ".join(p))
        refs.append(" ".join(t))
    n = max(len(rows), 1)
    # sacrebleu reports a percentage; a perfect corpus comes back as 100.00000000000004
    bleu = min(1.0, sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score / 100) if rows else 0.0
    summary = {
        "samples": len(rows),
        "exact_match": sum(r["exact"] for r in rows) / n,
        "within_1": sum(r["edits"] <= 1 for r in rows) / n,
        "within_2": sum(r["edits"] <= 2 for r in rows) / n,
        "token_edit_distance": sum(r["edit_distance"] for r in rows) / n,
        "bleu4": bleu,
    }
    return summary, rows


def quad_iou(a, b) -> float:
    pa, pb = Polygon(np.asarray(a, float)), Polygon(np.asarray(b, float))
    if not pa.is_valid:
        pa = pa.buffer(0)
    if not pb.is_valid:
        pb = pb.buffer(0)
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return float(inter / union) if union > 0 else 0.0


def match_quads(preds: list, truths: list, threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches (pred index, truth index, IoU) with IoU >= threshold."""
    if not preds or not truths:
        return []
    iou = np.array([[quad_iou(p, t) for t in truths] for p in preds])
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


def detector_metrics(samples: list[tuple[list, list]], threshold: float = 0.5) -> tuple[dict, list[dict]]:
    """samples: (predicted quads, true quads) per image → summary and per-image rows."""
    tp = fp = fn = 0
    ious = []
    rows = []
    for preds, truths in samples:
        m = match_quads(preds, truths, threshold)
        tp += len(m)
        fp += len(preds) - len(m)
        fn += len(truths) - len(m)
        ious += [x[2] for x in m]
        rows.append({"predicted": len(preds), "truth": len(truths), "matched": len(m),
                     "ious": [round(x[2], 4) for x in m]})
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"images": len(samples), "precision": precision, "recall": recall, "f1": f1,
            "mean_iou": float(np.mean(ious)) if ious else 0.0, "true_positives": tp, "false_positives": fp,
            "false_negatives": fn}, rows


def box_quad(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# A fine-tune round scores many checkpoints; their validation scores spread by about 0.01 from
# luck alone (the twentieth session's best of 18 led by 0.0044 and read both test sets worse).
ADOPTION_MARGIN = 0.01
ADOPTION_INK_SLACK = 0.01
# a round whose printed training looks like the typeset validation set (the twenty-fourth
# session's: CROHME truths typeset by pdflatex) may not read the real long pages worse than this
ADOPTION_LONG_SLACK = 0.01


def adoption_verdict(committed: dict, candidates: list[dict], *, margin: float = ADOPTION_MARGIN,
                     ink_slack: float = ADOPTION_INK_SLACK, long_slack: float | None = None) -> dict:
    """Which fine-tuned recognizer to adopt, from ``bench/finetune_validation.py`` rows alone.

    Each row holds ``weights``, ``score`` and ``inks["exact"]``. The best-scoring candidate is
    adopted if its score beats the committed weights' by at least ``margin`` and its ink exact
    match is no more than ``ink_slack`` below theirs; otherwise none is, and ``reason`` says why.
    With ``long_slack``, the rows also hold ``long_pages["bleu4"]`` (real im2markup pages no run
    trains on) and the best may not read them more than ``long_slack`` below the committed weights.
    """
    if not candidates:
        return {"adopt": None, "best": None, "lead": None, "reason": "no candidates"}
    best = max(candidates, key=lambda row: row["score"])
    lead = round(best["score"] - committed["score"], 4)
    ink_drop = round(committed["inks"]["exact"] - best["inks"]["exact"], 4)
    if lead < margin:
        reason = f"best score {best['score']} leads the committed {committed['score']} by {lead}, under {margin}"
    elif ink_drop > ink_slack:
        reason = f"ink exact match {best['inks']['exact']} is {ink_drop} below the committed, over {ink_slack}"
    elif long_slack is not None and (
            long_drop := round(committed["long_pages"]["bleu4"] - best["long_pages"]["bleu4"], 4)) > long_slack:
        reason = f"long pages' BLEU-4 {best['long_pages']['bleu4']} is {long_drop} below the committed, over {long_slack}"
    else:
        return {"adopt": best["weights"], "best": best["weights"], "lead": lead,
                "reason": f"leads by {lead}, ink exact match {best['inks']['exact']}"}
    return {"adopt": None, "best": best["weights"], "lead": lead, "reason": reason}


# a round that teaches reading long formulas is judged on the pages it targets, as long as the
# general score holds: it may not fall more than this below the committed weights'
LONG_ROUND_SCORE_SLACK = 0.005
LONG_ROUND_GAIN = 0.05


def long_formula_verdict(committed: dict, candidates: list[dict], *, score_slack: float = LONG_ROUND_SCORE_SLACK,
                         ink_slack: float = ADOPTION_INK_SLACK, gain: float = LONG_ROUND_GAIN) -> dict:
    """Which recognizer of a long-formula round to adopt (``bench/finetune_validation.py --long`` rows).

    Rows hold ``weights``, ``score``, ``inks["exact"]`` and ``long_pages["bleu4"]``. A candidate
    qualifies when its long pages' BLEU-4 beats the committed weights' by at least ``gain``, its
    score is at most ``score_slack`` below theirs and its ink exact match at most ``ink_slack``
    below; of those, the best score is adopted. Declared before the twenty-second session's round
    was scored: that round reads formulas past 150 tokens, which the general score (CROHME truths
    of under 100 tokens) cannot see.
    """
    def why_not(row: dict) -> str | None:
        long_gain = round(row["long_pages"]["bleu4"] - committed["long_pages"]["bleu4"], 4)
        if long_gain < gain:
            return f"long pages' BLEU-4 gains {long_gain}, under {gain}"
        if row["score"] < committed["score"] - score_slack:
            return f"score {row['score']} is more than {score_slack} below the committed {committed['score']}"
        if row["inks"]["exact"] < committed["inks"]["exact"] - ink_slack:
            return f"ink exact match {row['inks']['exact']} is more than {ink_slack} below the committed"
        return None

    if not candidates:
        return {"adopt": None, "reason": "no candidates"}
    reasons = {row["weights"]: why_not(row) for row in candidates}
    qualified = [row for row in candidates if reasons[row["weights"]] is None]
    if not qualified:
        best = max(candidates, key=lambda row: row["long_pages"]["bleu4"])
        return {"adopt": None, "best": best["weights"], "reason": reasons[best["weights"]]}
    chosen = max(qualified, key=lambda row: row["score"])
    return {"adopt": chosen["weights"], "best": chosen["weights"],
            "reason": f"long pages' BLEU-4 {chosen['long_pages']['bleu4']} against {committed['long_pages']['bleu4']}, "
                      f"score {chosen['score']} against {committed['score']}"}
