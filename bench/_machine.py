"""Machine facts printed with every benchmark figure."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def facts() -> str:
    """One line for the model benchmarks: CPU, cores, load, torch threads, CUDA and the encoder precision."""
    import torch
    from _benchutil import cpu_name

    from pipeline.ml.inference import cpu_has_amx_bf16, encoder_uses_bf16

    cpu = cpu_name()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"machine: {cpu}, {os.cpu_count()} logical CPUs, load avg {load[0]:.2f}, torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}, python {platform.python_version()}, "
            f"AMX bf16 {cpu_has_amx_bf16()}, recognizer encoder "
            f"{'bfloat16' if encoder_uses_bf16(None, 'cpu') else 'float32'}")


def shared_data() -> Path:
    return Path(os.environ.get("MATHSET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def candidate_recognizers(paths: list[str]):
    """``(given, config, model)`` for each recognizer named: an exported weights folder, or a training
    checkpoint ``*.pt`` exported (as training exports) to a temporary folder first; float32 on the CPU,
    as training validates. One model is loaded at a time."""
    import json
    import tempfile

    from pipeline.ml.inference import load_recognizer
    from pipeline.ml.train_recognizer import export

    with tempfile.TemporaryDirectory() as tmp:
        for i, given in enumerate(paths):
            folder = Path(given)
            if folder.suffix == ".pt":
                folder = Path(tmp) / str(i)
                export(Path(given), folder)
            cfg = json.loads((folder / "config.json").read_text())
            yield given, cfg, load_recognizer(folder, device="cpu", precision="float32")
