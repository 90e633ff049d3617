"""One recognizer fine-tune round on a lent GPU machine, inside its device time.

A task that is lent a GPU gets 15 minutes of device time in all (the machine's start, transfers
and idle time counted), at most 10 minutes a command, and a machine that starts bare: no project
virtual environment, no pdflatex, no ``../shared/data``. This module makes that window one
prepared call::

    python -m pipeline.ml.device_round bundle     # here: .device/ holds the data, wheels and printed pool
    # the `run` call it prints (command, carry [".device"], timeout_s), which on the GPU does:
    python -m pipeline.ml.device_round train --minutes 6.5   # fine-tune; slim checkpoints into $OUT
    python bench/finetune_validation.py --threads 2 --long --rule adoption \\
        --committed pipeline/weights/recognizer FILES_AT/step-*.pt   # here again: validation only

Why a fine-tune of the committed weights and not the from-scratch run the earlier notes planned:
the committed weights' own GPU start took 20 minutes for 18,500 steps of 96 and then 6,300 CPU
fine-tune steps; a from-scratch run in one window's ~7 training minutes reaches about step 8,000,
which validated at 0.316 CROHME 2013 exact against the committed 0.374 (``training-log.txt``), and
a checkpoint cannot outlive the session to be resumed by the next lent task (a fresh checkout has
no ``var/``). The same minutes spent fine-tuning draw about 5,000 batches of 96, over ten times the
samples of a CPU round (1,080 of 32).

``bundle`` checks that what travels fits the device tool's 64 MiB (the checkout's tracked and
untracked files plus ``.device/``: 56.6 MiB, of which the data 20, the pdflatex crops 19, the wheels
5); ``train`` brings back what fits its 8 files of at most 16 MiB, 64 MiB together: the log and
the latest checkpoints slimmed to float16 weights and config, without the optimiser (9.2 MB each).
On this 2-core CPU the whole path ran with 40 steps of batch 8 (the pool drawn in 113 s on 2
processes; ``tests/pipeline/test_device_round.py`` runs it with a tiny model); it has not yet run
on a GPU.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / ".device"
COMMITTED = ROOT / "pipeline" / "weights" / "recognizer"
# the device tool's limits (/work/.library/device/README.md): what travels, what comes back
TRAVEL_LIMIT = 64 * 2**20
RETURN_FILES, RETURN_FILE_LIMIT, RETURN_LIMIT = 8, 16 * 2**20, 64 * 2**20
# the printed pool: the committed weights' last fine-tune's (E7) with a new seed and 10,000 recombined
# formulas instead of 16,000, half of them with their symbols renamed (E9: the real long pages rose,
# pipeline/RESULTS.md). The device has no pdflatex, so those are typeset here and travel (16,000
# would not fit beside the data: 31 MB), and mathtext draws the rest there
POOL = {"printed": 12000, "recombined": 10000, "seed": 9, "renderer": "pdflatex", "max_len": 250, "substitute": 0.5}
# the shared data the run reads (train_recognizer)
SHARED_FILES = ("crohme/train-2016.tar.xz", "im2markup/train.tsv", "im2markup/pages")
# packages train_recognizer imports that the device image lacks (its python3 is 3.12)
DEVICE_MISSING = ("RapidFuzz", "shapely")
# the typeset crops travel in 16 grey levels (xz): a third smaller than 256, and the training
# input's resize to 64 px averages the steps away
LEVELS = 16


def pool_name() -> str:
    """The printed pool's cache file name, as train_recognizer's runs name theirs."""
    renamed = f"-sub{round(100 * POOL['substitute'])}" if POOL.get("substitute") else ""
    return (f"printed-{POOL['printed']}-r{POOL['recombined']}-seed{POOL['seed']}-{POOL['renderer']}"
            f"-t{POOL['max_len']}{renamed}.pkl.gz")


def carried_name() -> str:
    """The file carrying the pool's jobs and its pdflatex crops."""
    return pool_name().replace("printed-", "carried-").replace(".pkl.gz", ".pkl.xz")


def pool_jobs(shared: Path) -> tuple[list, list]:
    """(mathtext jobs, pdflatex jobs) of the pool, from the texts train_recognizer draws it from."""
    from pipeline.ml import data
    from pipeline.ml.train_recognizer import crohme_train_inks, printed_pool_jobs, printed_texts

    # as train_recognizer draws them for a run without --im2markup-val
    texts, pieces = printed_texts(crohme_train_inks(shared), [(img, toks) for img, toks, _name in
                                                              data.im2markup_samples(shared, heldout=False)])
    return printed_pool_jobs(POOL["printed"], texts, POOL["seed"], pieces=pieces, recombined=POOL["recombined"],
                             renderer=POOL["renderer"], recombined_max_tokens=POOL["max_len"],
                             substitute=POOL.get("substitute", 0.0))


def jobs_digest(jobs: list) -> str:
    return hashlib.sha256(json.dumps(jobs).encode()).hexdigest()


def write_carried(path: Path, mathtext_jobs: list, typeset_jobs: list, workers: int) -> None:
    """Typeset the pool's pdflatex jobs here and keep them, quantised, in ``path`` with the mathtext
    jobs: the device draws those from the list itself, since another numpy there may draw other
    formulas from the same seeds."""
    from pipeline.ml.train_recognizer import render_printed_jobs

    crops = render_printed_jobs(typeset_jobs, workers, typeset=True)
    packed = [(img.astype(np.float32) * ((LEVELS - 1) / 255)).round().astype(np.uint8) for img, _ in crops]
    tmp = path.with_suffix(".tmp")
    with lzma.open(tmp, "wb") as fh:
        pickle.dump({"pool": POOL, "typeset_jobs": jobs_digest(typeset_jobs), "mathtext_jobs": mathtext_jobs,
                     "levels": LEVELS, "crops": [(a, toks) for a, (_, toks) in zip(packed, crops, strict=True)]},
                    fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def read_carried(path: Path, typeset_jobs: list | None = None) -> tuple[list, list[tuple[np.ndarray, list[str]]]]:
    """(mathtext jobs, pdflatex crops) carried in ``path``; refused unless made for this pool
    (and, given ``typeset_jobs``, for these very jobs)."""
    with lzma.open(path, "rb") as fh:
        stored = pickle.load(fh)
    if stored["pool"] != POOL or (typeset_jobs is not None and stored["typeset_jobs"] != jobs_digest(typeset_jobs)):
        raise SystemExit(f"{path} was made for another pool ({stored['pool']}) or other texts: "
                         "run `python -m pipeline.ml.device_round bundle` again")
    scale = 255 / (stored["levels"] - 1)
    return stored["mathtext_jobs"], [((a.astype(np.float32) * scale).round().astype(np.uint8), toks)
                                     for a, toks in stored["crops"]]


def slim_checkpoint(src: Path, dst: Path) -> int:
    """Write a training checkpoint's float16 weights, config and step to ``dst`` (no optimiser
    state: a third of the size, and what ``train_recognizer.export`` and
    ``bench/finetune_validation.py`` read). Returns the bytes written."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    slim = {"model": {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()},
            "config": state["config"], "step": state["step"], "seconds": state.get("seconds", 0.0),
            "best_val": state.get("best_val", -1.0),
            "im2markup_val_held_out": state.get("im2markup_val_held_out", False)}
    tmp = dst.with_suffix(".tmp")
    torch.save(slim, tmp)
    tmp.replace(dst)
    return dst.stat().st_size


def latest_checkpoints(run: Path, keep: int) -> list[Path]:
    """The ``keep`` latest ``step-N.pt`` of a run, in step order."""
    steps = sorted(run.glob("step-*.pt"), key=lambda p: int(p.stem.split("-", 1)[1]))
    return steps[-keep:] if keep > 0 else []


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the files the device tool sends besides carried paths: tracked, and untracked
    files git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((root / os.fsdecode(name)).stat().st_size for name in listed
               if name and (root / os.fsdecode(name)).is_file())


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def requirement_pins(names: tuple[str, ...], requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """``NAME==VERSION`` of ``names`` as requirements.txt pins them (case-insensitive)."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = f"{name.strip()}=={version.strip()}"
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise SystemExit(f"requirements.txt pins no version of {', '.join(missing)}")
    return [pins[n.lower()] for n in names]


def bundle(args) -> None:
    """Fill ``.device/`` and print the device call; refuse a bundle that cannot travel."""
    from pipeline.ml.train_recognizer import shared_dir

    shared = shared_dir()
    absent = [f for f in SHARED_FILES if not (shared / f).exists()]
    if absent:
        raise SystemExit(f"the shared data lacks {', '.join(absent)} under {shared} (see the README, 'Real data')")
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for rel in SHARED_FILES:
        src, dst = shared / rel, out / "data" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
    wheels = out / "whl"
    wheels.mkdir(exist_ok=True)
    if not any(wheels.glob("*.whl")):
        platforms = [a for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                                   "manylinux_2_17_x86_64", "manylinux2014_x86_64") for a in ("--platform", tag)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(wheels),
                        *requirement_pins(DEVICE_MISSING)], check=True)
    mathtext_jobs, typeset_jobs = pool_jobs(shared)
    carried = out / carried_name()
    try:
        read_carried(carried, typeset_jobs)
    except (FileNotFoundError, SystemExit):
        write_carried(carried, mathtext_jobs, typeset_jobs, args.workers)
    travel = tree_bytes() + folder_bytes(out)
    print(json.dumps({"bundle": str(out), "bundle_mib": round(folder_bytes(out) / 2**20, 1),
                      "travels_mib": round(travel / 2**20, 1), "limit_mib": TRAVEL_LIMIT // 2**20}))
    if travel > TRAVEL_LIMIT:
        raise SystemExit(f"the checkout and {out} come to {travel / 2**20:.1f} MiB, over the device tool's "
                         f"{TRAVEL_LIMIT // 2**20} MiB: make the pool smaller or leave data out")
    rel = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    command = (f"set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site {rel}/whl/*.whl"
               f" && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 -m pipeline.ml.device_round train"
               f" --minutes {args.minutes} --bundle {rel} 2>&1 | tee $OUT/device-round.log")
    print(json.dumps({"run": {"command": command, "carry": [str(rel)], "timeout_s": 600}}, indent=1))


def train(args) -> None:
    """The fine-tune (on the device), then the latest checkpoints slimmed into ``--out``."""
    from pipeline.ml import train_recognizer

    bundle_dir = Path(args.bundle).resolve()
    out = Path(args.out or os.environ.get("OUT") or ROOT / "var" / "device-round")
    out.mkdir(parents=True, exist_ok=True)
    run = Path(args.run)
    os.environ["MATHSET_SHARED_DATA"] = str(bundle_dir / "data")
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) - 2)
    pool = run / pool_name()
    if not pool.exists():  # mathtext draws its part here; the pdflatex part came along
        t0 = time.time()
        mathtext_jobs, typeset = read_carried(bundle_dir / carried_name())
        crops = train_recognizer.render_printed_jobs(mathtext_jobs, workers) + typeset
        train_recognizer.store_printed_pool(
            pool, crops, n=POOL["printed"], recombined=POOL["recombined"], seed=POOL["seed"], im2markup_val=False,
            renderer=POOL["renderer"], truths_renderer="mathtext", recombined_max_tokens=max(150, POOL["max_len"]),
            substitute=POOL.get("substitute", 0.0))
        print(f"printed pool: {len(crops)} crops ({len(typeset)} carried) in {time.time() - t0:.0f}s", flush=True)
    argv = ["--init", str(COMMITTED), "--run", str(run), "--out", str(run / "export"),
            "--minutes", str(args.minutes), "--steps", str(args.steps), "--batch", str(args.batch),
            "--lr", str(args.lr), "--warmup", str(args.warmup), "--printed", str(POOL["printed"]),
            "--recombined", str(POOL["recombined"]), "--recombined-renderer", POOL["renderer"],
            "--seed", str(POOL["seed"]), "--workers", str(workers), "--threads", str(args.threads),
            "--printed-cache", str(pool), "--crohme-repeat", "2", "--im2markup-repeat", "4",
            "--val", "0", "--ckpt-every", str(args.ckpt_every), "--keep-checkpoints",
            "--max-len", str(POOL["max_len"]), "--substitute", str(POOL.get("substitute", 0.0))]
    print("train_recognizer " + " ".join(argv), flush=True)
    train_recognizer.main(argv)
    keep = min(args.keep, RETURN_FILES - 1)  # one file back is the log
    sent = 0
    for ckpt in latest_checkpoints(run, keep):
        size = slim_checkpoint(ckpt, out / ckpt.name)
        if size > RETURN_FILE_LIMIT or sent + size > RETURN_LIMIT - 2**20:
            (out / ckpt.name).unlink()
            print(f"left out {ckpt.name}: over what the device tool brings back", flush=True)
            continue
        sent += size
        print(f"slimmed {ckpt.name} ({size / 2**20:.1f} MiB)", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    b = sub.add_parser("bundle", help="here: fill .device/ and print the device call")
    b.add_argument("--out", default=str(BUNDLE))
    b.add_argument("--workers", type=int, default=2, help="processes typesetting the pool's pdflatex part")
    b.add_argument("--minutes", type=float, default=6.5, help="training minutes the printed call asks for")
    t = sub.add_parser("train", help="on the device: fine-tune the committed weights, slim checkpoints into --out")
    t.add_argument("--bundle", default=str(BUNDLE))
    t.add_argument("--out", help="where slimmed checkpoints go (default $OUT, else var/device-round)")
    t.add_argument("--run", default="/tmp/device-round-run")
    t.add_argument("--minutes", type=float, default=6.5)
    t.add_argument("--steps", type=int, default=6000, help="the cosine schedule's length if time allows it")
    t.add_argument("--batch", type=int, default=96)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--warmup", type=int, default=300)
    t.add_argument("--ckpt-every", type=int, default=750)
    t.add_argument("--keep", type=int, default=6, help="latest checkpoints brought back (at most 7)")
    t.add_argument("--workers", type=int, help="data-loader processes (default: the cores less 2)")
    t.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    bundle(args) if args.verb == "bundle" else train(args)


if __name__ == "__main__":
    main()
