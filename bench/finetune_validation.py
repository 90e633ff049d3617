"""Choose among fine-tuned recognizers on validation data only: ``python bench/finetune_validation.py
[--threads T] WEIGHTS...``

For each recognizer (an exported weights folder, or a training checkpoint ``*.pt``), greedy
readings, float32, as training validates, of two validation sets that no run trains on:

* the CROHME **2013** test inks (handwriting; what ``train_recognizer --val`` measures);
* the same 2013 truths **typeset in print**: printed formulas whose token sequences no run has
  typeset. The committed weights read the im2markup validation slice from memory
  (``bench/im2markup_slice.py``), so this is the printed set a fine-tune *from* them can be chosen
  on. ``--printed pdflatex`` (the default where pdflatex is installed) typesets them as the
  im2markup test pages were made (:mod:`pipeline.ml.typeset`, 200 dpi); ``--printed mathtext``
  in Computer Modern with matplotlib's mathtext (a seeded size per formula), the stand-in the
  rounds before pdflatex was installed were chosen on (their figures are not comparable).

``--long`` also reads the im2markup *training* pages whose truths exceed 150 tokens
(:func:`pipeline.ml.data.im2markup_long`): every run dropped them as too long, so they judge a round
that teaches reading long formulas (:func:`pipeline.ml.evaluate.long_formula_verdict`, the verdict
then); their pieces did appear inside recombined formulas, for every run alike. ``--long --rule
adoption`` judges by the usual rule and also refuses a best candidate that reads those real pages
more than 0.01 BLEU-4 below the committed weights (``ADOPTION_LONG_SLACK``): for a round whose
printed training resembles the typeset validation set.

``score`` = mean(ink exact match, typeset BLEU-4), the rule a fine-tune is adopted by: the best
score, if it beats the committed weights' by at least 0.01 and its ink exact match is not more
than a point below theirs (:func:`pipeline.ml.evaluate.adoption_verdict`). With ``--committed
FOLDER`` (the committed weights, scored first) the last line is that verdict. The test sets
(CROHME 2016, the im2markup fifth) are not read here.
"""
from __future__ import annotations

import argparse
import json
import sys

import _machine  # first: puts the project on sys.path
import torch

from common.latex import normalize_tokens
from pipeline.ml import data, synth, typeset
from pipeline.ml import ink as inkml
from pipeline.ml.evaluate import ADOPTION_LONG_SLACK, adoption_verdict, long_formula_verdict, recognizer_metrics
from pipeline.ml.inference import read_crops


def score(model, samples: list) -> dict:
    """Exact, within 1 and BLEU-4 of ``model``'s greedy readings of ``samples``, and the readings'
    length against the truths' (a model that stops early reads long formulas short)."""
    readings = read_crops(model, [img for img, _ in samples], device="cpu", batch_size=64)
    summary, _rows = recognizer_metrics([(r.tokens, truth) for r, (_, truth) in zip(readings, samples, strict=True)])
    length = sum(len(r.tokens) for r in readings) / max(1, sum(len(truth) for _, truth in samples))
    return {"n": len(samples), "exact": round(summary["exact_match"], 4),
            "within1": round(summary["within_1"], 4), "bleu4": round(summary["bleu4"], 4),
            "length": round(length, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="weights folders or training checkpoints (.pt)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--printed", choices=["pdflatex", "mathtext"],
                   default="pdflatex" if typeset.available() else "mathtext",
                   help="how the printed validation set is typeset (default: pdflatex where installed)")
    p.add_argument("--committed", help="the committed weights folder: scored first, then the rule's verdict")
    p.add_argument("--long", action="store_true",
                   help="also the im2markup training pages over 150 tokens, and the long-formula round's verdict")
    p.add_argument("--rule", choices=["adoption", "long-formula"],
                   help="the verdict: adoption (the default without --long; with --long it also keeps the long "
                        "pages' BLEU-4 within 0.01 of the committed weights') or long-formula (the default with --long)")
    args = p.parse_args()
    rule = args.rule or ("long-formula" if args.long else "adoption")
    if rule == "long-formula" and not args.long:
        p.error("--rule long-formula judges the long pages: give --long as well")
    torch.set_num_threads(args.threads)
    tar = _machine.shared_data() / "crohme" / "test-2013.tar.xz"
    if not tar.exists():
        sys.exit(f"skipped: {tar} is absent (see the project README, 'Real data')")
    inks = [(inkml.render_ink(ink), normalize_tokens(ink.truth)) for _, ink in inkml.iter_inks(tar)]
    inks = [(img, toks) for img, toks in inks if toks]
    if args.printed == "pdflatex":
        crops = typeset.render_many([" ".join(toks) for _, toks in inks])
        printed_set = [(crop, toks) for crop, (_, toks) in zip(crops, inks, strict=True) if crop is not None]
    else:
        printed_set = synth.typeset_samples([toks for _, toks in inks], seed=2013, fonts=("cm",))
    long_pages = ([(img, toks) for img, toks, _name in data.im2markup_samples(_machine.shared_data(), heldout=False)
                   if data.im2markup_long(toks)] if args.long else [])
    print(json.dumps({"inks": len(inks), "typeset": len(printed_set), "printed": args.printed,
                      **({"long_pages": len(long_pages)} if args.long else {})}), flush=True)
    rows = []
    for given, cfg, model in _machine.candidate_recognizers(([args.committed] if args.committed else []) + args.weights):
        ink, printed = score(model, inks), score(model, printed_set)
        rows.append({"weights": given, "trained_steps": cfg.get("trained_steps"),
                     "fine_tuned_steps": cfg.get("fine_tuned_steps"), "inks": ink, f"typeset_{args.printed}": printed,
                     "score": round((ink["exact"] + printed["bleu4"]) / 2, 4),
                     **({"long_pages": score(model, long_pages)} if args.long else {})})
        print(json.dumps(rows[-1]), flush=True)
    if args.committed:
        verdict = (long_formula_verdict(rows[0], rows[1:]) if rule == "long-formula"
                   else adoption_verdict(rows[0], rows[1:], long_slack=ADOPTION_LONG_SLACK if args.long else None))
        print(json.dumps({"verdict": verdict, "rule": rule}), flush=True)
    print(_machine.facts())


if __name__ == "__main__":
    main()
