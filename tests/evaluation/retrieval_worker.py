"""One rank of the 2-process retrieval check: ``python retrieval_worker.py RANK WORLD INIT_FILE OUT_DIR``.

test_retrieval_dist.py runs it as two gloo processes and loads :func:`run_config` in-process for the 1-process
reference (with no process group), so both sides build the same seeded inputs here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from xvlm_lit.evaluation.retrieval import evaluate_retrieval
from xvlm_lit.testing import micro_xvlm, random_batch

#: name -> (num_images, evaluate_retrieval keywords, image batches instead of a tensor)
CONFIGS = {
    "bit_exact": (7, dict(k=3, score="itm", batch_size=1, pair_batch_size=1), False),
    "chunked": (7, dict(k=3, score="itm", batch_size=3, pair_batch_size=5), True),
    "itm+itc": (7, dict(k=4, score="itm+itc", batch_size=2, pair_batch_size=7), False),
    "itc": (7, dict(k=4, score="itc", batch_size=2), True),
    "rerank_all": (7, dict(k=100, score="itm", batch_size=4, pair_batch_size=16), False),
    "one_image": (1, dict(k=2, score="itm", batch_size=1, pair_batch_size=1), False),  # rank 1 has no image
}

#: rank -> its images, uneven (4 + 3) and not contiguous
SHARDS = {7: ([5, 0, 3, 6], [2, 1, 4]), 1: ([0], [])}


def inputs(num_images: int):
    """(model, images [Ni,3,R,R], text ids/mask [Nt,L], text_to_image [Nt]); 5 captions per image, shuffled."""
    model = micro_xvlm(seed=0)
    b = random_batch(model, num_images, 5, regions=False, seed=3)
    perm = torch.randperm(num_images * 5, generator=torch.Generator().manual_seed(2))
    return model, b.images, b.text_ids[perm], b.text_mask[perm], b.image_index[perm]


def run_config(name: str, rank: int, size: int) -> dict:
    """The result of ``name`` on this rank (all images when ``size == 1``)."""
    num_images, kwargs, as_batches = CONFIGS[name]
    model, images, ids, mask, t2i = inputs(num_images)
    index = torch.arange(num_images) if size == 1 else torch.tensor(SHARDS[num_images][rank], dtype=torch.long)
    mine = images[index]
    if as_batches:
        data = [(mine[s:s + 2], index[s:s + 2]) for s in range(0, len(index), 2)]
        res = evaluate_retrieval(model, data, ids, mask, t2i, **kwargs)
    else:
        res = evaluate_retrieval(model, mine, ids, mask, t2i, image_index=index, **kwargs)
    return {"metrics": res.metrics, "tr_i": res.tr_top_index, "tr_s": res.tr_top_score,
            "ir_i": res.ir_top_index, "ir_s": res.ir_top_score}


def main() -> None:
    rank, size, init_file, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        torch.save({name: run_config(name, rank, size) for name in CONFIGS}, out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
