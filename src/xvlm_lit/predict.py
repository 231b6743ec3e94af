"""``python -m xvlm_lit.predict {score,retrieve,ground,caption,answer} --ckpt <file> ...``: ask a trained model.

Examples::

    python -m xvlm_lit.predict ground --ckpt outputs/demo/pretrain/checkpoints/last.ckpt \\
        --image photo.jpg --text "the red triangle" --out box.png
    python -m xvlm_lit.predict score --ckpt last.ckpt --image a.jpg b.jpg --text "a dog" "a cat"
    python -m xvlm_lit.predict retrieve --ckpt last.ckpt --text "a red circle" --gallery images/ -k 5 --html top5.html
    python -m xvlm_lit.predict retrieve --ckpt last.ckpt --image a.jpg --gallery captions.txt
    python -m xvlm_lit.predict caption --ckpt caption_run/checkpoints/last.ckpt --image a.jpg
    python -m xvlm_lit.predict answer --ckpt vqa_run/checkpoints/last.ckpt --image a.jpg --question "what colour?"

A run's checkpoint brings its own config (``<run>/.hydra/config.yaml``); for a safetensors export or a reference
``.th`` name the architecture with ``--model`` (default ``xvlm_base``). ``--json`` prints machine-readable output.
Errors (a missing file, an unreadable image, a checkpoint without the needed head) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class UsageError(Exception):
    """A command line that cannot run (printed as one line)."""


def expand_images(items: Sequence[str]) -> list[str]:
    """Image files, with directories replaced by their image files (sorted)."""
    out: list[str] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this directory")
            out += found
        elif not path.is_file():
            raise UsageError(f"no such file or directory: {path}")
        else:
            out.append(str(path))
    return out


def expand_texts(items: Sequence[str]) -> list[str]:
    """Texts, with each ``.txt`` file replaced by its non-empty lines."""
    out: list[str] = []
    for item in items:
        if item.endswith(".txt"):
            path = Path(item).expanduser()
            if not path.is_file():
                raise UsageError(f"no such file: {path}")
            out += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            out.append(item)
    if not out:
        raise UsageError("no texts given")
    return out


def _print(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def cmd_score(p, args: argparse.Namespace) -> None:
    images, texts = expand_images(args.image), expand_texts(args.text)
    s = p.score(images, texts, paired=args.paired)
    payload = {"images": images, "texts": texts, "paired": args.paired, **s.to_dict()}
    if args.paired:
        rows = [f"{s.itc[n]:8.4f} {s.itm[n]:8.4f}  {Path(images[n % len(images)]).name}  {texts[n % len(texts)]}"
                for n in range(len(s.itc))]
    else:
        rows = [f"{s.itc[i, t]:8.4f} {s.itm[i, t]:8.4f}  {Path(images[i]).name}  {texts[t]}"
                for i in range(len(images)) for t in range(len(texts))]
    _print(args, payload, "\n".join([f"{'ITC':>8} {'ITM p':>8}  image  text", *rows]))


def cmd_retrieve(p, args: argparse.Namespace) -> None:
    from xvlm_lit.inference.render import retrieval_html

    if bool(args.text) == bool(args.image):
        raise UsageError("retrieve: give either --text queries (gallery: images) or --image queries (gallery: texts)")
    if args.text:
        queries, gallery = expand_texts(args.text), expand_images(args.gallery)
        results = p.retrieve(queries, gallery, k=args.k, rerank=args.rerank)
        direction, query_images = "text->image", None
    else:
        query_images, gallery = expand_images(args.image), expand_texts(args.gallery)
        results = p.retrieve([Path(q) for q in query_images], gallery, k=args.k, rerank=args.rerank)
        queries, direction = query_images, "image->text"
    lines = []
    for query, matches in zip(queries, results, strict=True):
        lines.append(f"query: {query}\n{'rank':>4} {'ITC':>8} {'ITM p':>8}  item")
        lines += [f"{m.rank + 1:>4} {m.itc:8.4f} {'-' if m.itm is None else f'{m.itm:.4f}':>8}  {m.item}"
                  for m in matches]
    payload = {"direction": direction, "k": args.k,
               "queries": [{"query": q, "matches": [m.to_dict() for m in ms]} for q, ms in zip(queries, results,
                                                                                              strict=True)]}
    if args.html:
        payload["html"] = str(retrieval_html(queries, results, args.html, query_images))
        lines.append(f"wrote {args.html}")
    _print(args, payload, "\n".join(lines))


def cmd_ground(p, args: argparse.Namespace) -> None:
    from xvlm_lit.inference.images import read_image
    from xvlm_lit.inference.render import PALETTE, draw_box, enlarge

    image, texts = expand_images([args.image])[0], expand_texts(args.text)
    pil = read_image(image)
    boxes = p.ground(pil, texts)
    payload: dict[str, Any] = {"image": image, "boxes": [b.to_dict() for b in boxes]}
    lines = [f"{b.text!r}: x1,y1,x2,y2 = {', '.join(f'{v:.1f}' for v in b.xyxy)} (pixels of the "
             f"{b.image_size[0]}x{b.image_size[1]} image)" for b in boxes]
    if args.out:
        if args.scale <= 0:
            raise UsageError(f"--scale must be > 0, got {args.scale}")
        drawn = enlarge(pil, args.scale)
        for n, b in enumerate(boxes):
            drawn = draw_box(drawn, b, colour=PALETTE[n % len(PALETTE)], scale=args.scale)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        drawn.save(args.out)
        payload["out"] = args.out
        lines.append(f"wrote {args.out}")
    _print(args, payload, "\n".join(lines))


def cmd_caption(p, args: argparse.Namespace) -> None:
    images = expand_images(args.image)
    decoding = {"num_beams": args.num_beams} if args.num_beams else {}
    captions = p.caption(images, **decoding)
    _print(args, [{"image": i, "caption": c} for i, c in zip(images, captions, strict=True)],
           "\n".join(f"{Path(i).name}: {c}" for i, c in zip(images, captions, strict=True)))


def cmd_answer(p, args: argparse.Namespace) -> None:
    images, questions = expand_images(args.image), expand_texts(args.question)
    candidates = expand_texts([args.answers]) if args.answers else None
    answers = p.answer(images, questions, candidates)
    n = max(len(images), len(questions))
    rows = [{"image": images[i % len(images)], "question": questions[i % len(questions)], "answer": answers[i]}
            for i in range(n)]
    _print(args, rows, "\n".join(f"{Path(r['image']).name}: {r['question']} -> {r['answer']}" for r in rows))


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ckpt", required=True, help="Lightning .ckpt of a run, our .safetensors, or a reference .th")
    common.add_argument("--model", help="architecture for a file without a run config: a conf/model name or yaml "
                        "(default xvlm_base; vqa_base for a VQA file)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="model override, e.g. --set vision.image_size=384 (repeatable)")
    common.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = argparse.ArgumentParser(prog="python -m xvlm_lit.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", parents=[common], help="ITC similarity and ITM probability of images x texts")
    s.add_argument("--image", nargs="+", required=True, help="image files or directories")
    s.add_argument("--text", nargs="+", required=True, help="texts, or .txt files with one text a line")
    s.add_argument("--paired", action="store_true", help="score image i with text i instead of every pair")
    s.set_defaults(func=cmd_score)
    r = sub.add_parser("retrieve", parents=[common], help="rank a gallery for text or image queries")
    r.add_argument("--text", nargs="+", help="text queries (the gallery holds images)")
    r.add_argument("--image", nargs="+", help="image queries (the gallery holds texts)")
    r.add_argument("--gallery", nargs="+", required=True, help="images/directories, or texts/.txt files")
    r.add_argument("-k", type=int, default=5, help="results per query (default 5)")
    r.add_argument("--rerank", type=int, default=None, help="ITC candidates re-ranked by ITM (default 16; 0: none)")
    r.add_argument("--html", help="write an HTML page with the top-k thumbnails")
    r.set_defaults(func=cmd_retrieve)
    g = sub.add_parser("ground", parents=[common], help="the box of each text in the image")
    g.add_argument("--image", required=True, help="image file")
    g.add_argument("--text", nargs="+", required=True, help="referring expressions")
    g.add_argument("--out", help="write the image with the boxes and texts drawn (PNG/JPEG by suffix)")
    g.add_argument("--scale", type=float, default=1.0, help="enlarge the drawn picture (small images), e.g. 3")
    g.set_defaults(func=cmd_ground)
    c = sub.add_parser("caption", parents=[common], help="caption images (a captioning checkpoint)")
    c.add_argument("--image", nargs="+", required=True, help="image files or directories")
    c.add_argument("--num-beams", type=int, help="beam width (default: the run's task.num_beams)")
    c.set_defaults(func=cmd_caption)
    a = sub.add_parser("answer", parents=[common], help="answer questions (a VQA checkpoint)")
    a.add_argument("--image", nargs="+", required=True, help="image files (one, or one per question)")
    a.add_argument("--question", nargs="+", required=True, help="questions, or .txt files")
    a.add_argument("--answers", help=".txt file of candidate answers (default: the run's answer list)")
    a.set_defaults(func=cmd_answer)
    return p


def _one_line(err: BaseException) -> str:
    from xvlm_lit.checkpoints import CheckpointMismatchError

    if isinstance(err, CheckpointMismatchError):
        first = err.problems[0] if err.problems else ""
        return (f"{str(err).splitlines()[0]} first: {first}; the file does not fit this architecture: pass --model "
                "<conf/model name> (and --set overrides) matching the checkpoint")
    return " ".join(str(err).split())


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from xvlm_lit.checkpoints import CheckpointMismatchError, UnsafeCheckpointError
    from xvlm_lit.config import ConfigError
    from xvlm_lit.inference import InferenceError, load

    known = (UsageError, FileNotFoundError, InferenceError, CheckpointMismatchError, UnsafeCheckpointError,
             ConfigError)
    try:
        ckpt = Path(args.ckpt).expanduser()
        if not ckpt.is_file():
            raise UsageError(f"no such checkpoint file: {ckpt}")
        p = load(ckpt, device=args.device, model=args.model, overrides=args.overrides)
        args.func(p, args)
    except known as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
