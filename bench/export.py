"""Export throughput and memory: labels of N synthetic images through the COCO and JSONL writers.

    nice -n 10 python bench/export.py                 # 100,000 images, both formats
    nice -n 10 python bench/export.py --images 20000 --formats coco

Each format runs in its own fresh process, so its peak RSS (``resource.getrusage``) is its
own. Records are built on the fly by a generator, as a database cursor would yield them, and
their construction is counted in the time (end to end, conservative). Labels only: no image
bytes. Average 3 regions per image (2-4 quads, and a mask region on every tenth image).
CPU seconds are reported beside wall time because a shared machine's wall time says more
about its load than about the code. A second, smaller run under ``tracemalloc`` reports the Python-heap peak.

Targets (issue 6): >= 20,000 annotations/s, peak memory < 500 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from curation.exporters import (  # noqa: E402
    CategoryInfo,
    ExportImage,
    ExportRegion,
    LicenceInfo,
    SourceInfo,
    export,
    mask_to_rle,
)

LATEX = [r"\frac{a+b}{c}", r"x^{2}+y^{2}=r^{2}", r"\sum_{i=1}^{n} i = \frac{n(n+1)}{2}",
         r"\int_{0}^{1} f(x)\,dx", r"\sqrt{b^{2}-4ac}", r"\lim_{x \to 0} \frac{\sin x}{x} = 1"]


def records(n: int):
    licences = [LicenceInfo("mit", "MIT", allows_commercial=True, allows_derivatives=True),
                LicenceInfo("cc-by-4.0", "CC BY 4.0", allows_commercial=True, allows_derivatives=True)]
    sources = [SourceInfo("im2markup", "Harvard NLP", "im2markup, MIT"), SourceInfo("in-house", "Mathset", "")]
    mask = np.zeros((480, 640), dtype=np.uint8)
    mask[100:140, 200:420] = 1
    rle = mask_to_rle(mask)
    rng = np.random.default_rng(0)
    quads = rng.uniform(0, 600, size=(1024, 4, 2)).round(2)
    splits = ("train",) * 8 + ("validation", "test")
    for i in range(n):
        k = 2 + i % 3
        regions = [ExportRegion(points=quads[(i * 7 + j) % 1024], latex=LATEX[(i + j) % len(LATEX)]) for j in range(k)]
        if i % 10 == 0:
            regions.append(ExportRegion(mask_rle=rle, latex=LATEX[i % len(LATEX)]))
        yield ExportImage(image_id=i + 1, file_name=f"{i + 1:07d}.png", width=640, height=480,
                          split=splits[i % 10], licence=licences[i % 2], source=sources[i % 2],
                          categories=("printed",), regions=regions)


def run_one(fmt: str, n: int, traced: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{fmt}.zip"
        start, cpu_start = time.perf_counter(), time.process_time()
        result = export(records(n), out, format=fmt, include_images=False,
                        categories=[CategoryInfo("formula", "Formula")])
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        size = out.stat().st_size
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp:
        export(records(traced), Path(tmp) / "t.zip", format=fmt, include_images=False)
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"format": fmt, "images": result.images, "annotations": result.regions, "seconds": round(seconds, 2),
            "annotations_per_s": round(result.regions / seconds),
            "cpu_seconds": round(cpu_seconds, 2), "annotations_per_cpu_s": round(result.regions / cpu_seconds), "zip_mb": round(size / 1e6, 1),
            "peak_rss_mb": round(peak_rss_mb, 1), "traced_images": traced,
            "python_heap_peak_mb": round(heap_peak / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--formats", nargs="+", default=["coco", "jsonl"])
    parser.add_argument("--traced-images", type=int, default=20_000,
                        help="images in the tracemalloc run (tracemalloc slows Python ~3x)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.images, args.traced_images)))
        return
    rows = []
    for fmt in args.formats:
        proc = subprocess.run([sys.executable, __file__, "--one", fmt, "--images", str(args.images),
                               "--traced-images", str(args.traced_images)],
                              check=True, capture_output=True, text=True, env={**os.environ})
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        memory_ok = row["peak_rss_mb"] < 500
        wall_ok = row["annotations_per_s"] >= 20_000 and memory_ok
        cpu_ok = row["annotations_per_cpu_s"] >= 20_000 and memory_ok
        print(f"{fmt:6s} {row['images']:>8,} images {row['annotations']:>9,} annotations in {row['seconds']:7.2f} s "
              f"= {row['annotations_per_s']:>8,} ann/s wall ({row['annotations_per_cpu_s']:,} per CPU-second); peak RSS {row['peak_rss_mb']:.0f} MB; "
              f"Python heap peak {row['python_heap_peak_mb']} MB ({row['traced_images']:,} images traced); "
              f"zip {row['zip_mb']} MB; targets: wall {'met' if wall_ok else 'MISSED'}, "
              f"per CPU-second {'met' if cpu_ok else 'MISSED'} (load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs)", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
