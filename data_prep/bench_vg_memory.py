"""Measure the VG converter's peak memory on a large synthetic ``region_descriptions.json``.

    python -m data_prep.bench_vg_memory --size-mb 200 [--workdir DIR] [--workers 1]

Writes (streaming) a Visual Genome-shaped ``image_data.json`` + ``region_descriptions.json`` of about ``--size-mb``
megabytes (a few real photographs, the other images missing, so the run measures reading and joining rather
than JPEG work), then runs ``python -m data_prep.vg`` on it in a fresh process and prints, as json, the peak
resident memory of that process (``ru_maxrss``), its resident memory right after the imports (``import torch``,
pulled in by webdataset, alone maps several hundred MB of shared libraries), the difference, the workers' peak and,
with ``--python-heap``, the peak of the Python heap during the conversion (tracemalloc).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

WORDS = ("man", "woman", "red", "shirt", "wearing", "a", "the", "on", "table", "white", "plate", "with", "food",
         "sign", "street", "window", "building", "tree", "green", "leaves", "car", "parked", "near", "sidewalk")
REGIONS_PER_IMAGE = 50
REAL_IMAGES = 3


def _phrase(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 5) % len(WORDS)] for k in range(3 + i % 6))


def generate(workdir: Path, size_mb: float) -> dict[str, Path]:
    """Write image_data.json and region_descriptions.json of about ``size_mb`` MB (regions) under ``workdir``."""
    from PIL import Image
    from skimage import data as skdata

    workdir.mkdir(parents=True, exist_ok=True)
    images_dir = workdir / "images" / "VG_100K"
    images_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("coffee", "chelsea", "rocket")[:REAL_IMAGES], 1):  # all about 3:2, like 600x400
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(images_dir / f"{i}.jpg", quality=90)
    target, written, image_id = size_mb * 1e6, 0, 0
    regions_path, data_path = workdir / "region_descriptions.json", workdir / "image_data.json"
    with open(regions_path, "w") as fr, open(data_path, "w") as fd:
        fr.write("[")
        fd.write("[")
        while written < target:
            image_id += 1
            regions = ",".join(
                f'{{"region_id": {image_id * 100 + r}, "width": {40 + r}, "height": {30 + r}, "image_id": {image_id},'
                f' "phrase": "{_phrase(image_id + r)}", "y": {r * 3}, "x": {r * 5}}}' for r in range(REGIONS_PER_IMAGE))
            chunk = f'{"," if image_id > 1 else ""}{{"regions": [{regions}], "id": {image_id}}}'
            fr.write(chunk)
            written += len(chunk)
            fd.write(f'{"," if image_id > 1 else ""}{{"width": 600, "url": "https://cs.stanford.edu/people/rak248/'
                     f'VG_100K/{image_id}.jpg", "height": 400, "image_id": {image_id}, "coco_id": null, '
                     f'"flickr_id": null}}')
        fr.write("]")
        fd.write("]")
    return {"images": workdir / "images", "image_data": data_path, "regions": regions_path}


def _rss_mb() -> float:
    """This process's peak RSS in MB. Linux keeps ``ru_maxrss`` across exec (a child of a big pytest worker starts
    at the parent's peak), so read the address space's own high-water mark (``VmHWM``) where there is one."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_this_process(workdir: Path, workers: int, python_heap: bool = False) -> dict[str, float]:
    """Run the VG converter here and report memory (call in a fresh process: ru_maxrss never goes down)."""
    start = time.perf_counter()
    from data_prep import vg  # the imports (webdataset -> torch) are part of the baseline

    baseline = _rss_mb()
    if python_heap:
        tracemalloc.start()
    manifest = vg.convert_vg(workdir / "images", workdir / "image_data.json", workdir / "out",
                             regions=str(workdir / "region_descriptions.json"), include_karpathy_eval=True,
                             workers=workers, progress=False, overwrite=True)
    peak = _rss_mb()
    return {"region_descriptions_mb": round((workdir / "region_descriptions.json").stat().st_size / 1e6, 1),
            "images": manifest["records"], "regions_written": manifest["counts"]["regions"],
            "peak_rss_mb": round(peak, 1), "rss_after_imports_mb": round(baseline, 1),
            "growth_mb": round(peak - baseline, 1),
            # children's ru_maxrss counts a forked worker's shared pages too; only meaningful with workers > 1
            "workers_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
            if workers > 1 else None,
            "python_heap_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1) if python_heap else None,
            "seconds": round(time.perf_counter() - start, 1)}


def measure(workdir: Path, workers: int = 1, python_heap: bool = False) -> dict[str, float]:
    """Run :func:`measure_in_this_process` in a fresh interpreter and return its report."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "data_prep.bench_vg_memory", "--measure", str(workdir), "--workers", str(workers),
           *(["--python-heap"] if python_heap else [])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.bench_vg_memory``."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.bench_vg_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200, help="size of region_descriptions.json (default 200)")
    parser.add_argument("--workdir", type=Path, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--workers", type=int, default=1, help="converter workers (default 1)")
    parser.add_argument("--python-heap", action="store_true",
                        help="also trace the Python heap peak (tracemalloc; about 3x slower)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: measure in this process
    a = parser.parse_args(argv)
    if a.measure:
        print(json.dumps(measure_in_this_process(a.measure, a.workers, a.python_heap)))
        return 0
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="bench_vg_"))
    try:
        start = time.perf_counter()
        generate(workdir, a.size_mb)
        print(f"generated {a.size_mb:g} MB in {time.perf_counter() - start:.1f}s under {workdir}", file=sys.stderr)
        print(json.dumps(measure(workdir, a.workers, a.python_heap), indent=2))
    finally:
        if a.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
