"""Shared options of the model commands."""
from __future__ import annotations

import json
import sys

import torch


def add_model_options(parser) -> None:
    parser.add_argument("--detector", help="detector weights folder (default: pipeline/weights/detector)")
    parser.add_argument("--recognizer", help="recognizer weights folder (default: pipeline/weights/recognizer)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beam", type=int, default=1, help="recognizer beam width (1: greedy)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                        help="recognizer encoder precision (default: $MATHSET_ENCODER_PRECISION or auto: "
                             "bfloat16 on a CPU with AMX, float32 elsewhere)")


def make_reader(options):
    from pipeline.ml.inference import FormulaReader

    if options.get("threads"):
        torch.set_num_threads(options["threads"])
    return FormulaReader(options.get("detector"), options.get("recognizer"), device=options.get("device"),
                         batch_size=options.get("batch_size", 16), beam_width=options.get("beam") or 1,
                         precision=options.get("precision"))


def emit(stdout, payload, as_json: bool, text_lines) -> None:
    if as_json:
        stdout.write(json.dumps(payload, indent=1))
    else:
        for line in text_lines:
            stdout.write(line)
    sys.stdout.flush()
