"""``python -m xvlm_lit.bench_retrieval``: host memory and time of the retrieval protocol on a COCO-5K-sized gallery.

A synthetic gallery (``--images`` random 128 px images streamed in batches, ``--texts-per-image`` random texts of
30 tokens each) through the tiny model: ITC over all pairs, the top ``--k`` re-ranked by ITM in both directions.
Prints one JSON object with the wall time per phase-free total and the process's peak resident memory (VmHWM),
which :mod:`xvlm_lit.bench` puts into its report.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import torch

from xvlm_lit.evaluation.retrieval import evaluate_retrieval


def peak_rss_gib() -> float:
    """Peak resident set size of this process (VmHWM), GiB."""
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def image_batches(n: int, size: int, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` random images in batches, generated on the fly (the gallery is never held whole)."""
    g = torch.Generator().manual_seed(0)
    for s in range(0, n, batch):
        idx = torch.arange(s, min(n, s + batch))
        yield torch.randn(len(idx), 3, size, size, generator=g), idx


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m xvlm_lit.bench_retrieval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--texts-per-image", type=int, default=5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    from xvlm_lit.bench import build  # the tiny model, random init

    model = build("xvlm_tiny", ("itc",)).model.eval()
    nt = args.images * args.texts_per_image
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (nt, 30), generator=g)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    t2i = torch.arange(args.images).repeat_interleave(args.texts_per_image)
    start = time.perf_counter()
    result = evaluate_retrieval(model, image_batches(args.images, model.image_size, args.batch_size), ids, mask, t2i,
                                k=args.k, batch_size=args.batch_size, pair_batch_size=512)
    report = {"images": args.images, "texts": nt, "k": args.k, "seconds": round(time.perf_counter() - start, 1),
              "peak_rss_gib": round(peak_rss_gib(), 3), "r_mean": result.metrics["r_mean"],
              "similarity_matrix_gib": round(args.images * nt * 4 / 2**30, 3)}
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
