#!/usr/bin/env python
"""`make bench`: run every benchmark group and write bench.json + BENCHMARKS.md.

Each measurement runs in a fresh process so its peak RSS is its own. `--quick` uses tiny sizes
(the test suite runs it so this script cannot rot); the default uses full sizes (the EPFL volume
shape, the ViT-B SAM architecture with random weights: speed does not depend on them).
`--only GROUP` re-measures some groups and keeps the others' figures from the existing bench.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402
from common import isolated, machine  # noqa: E402

#: Benchmark modules of their own (``benchmarks/<name>.py`` with ``measure(workdir, quick)`` and
#: ``render(result)``), measured after the pipeline groups, in this order.
TOPICS = ("tiling", "zcontext", "volumes", "iou_head", "families", "cache_verify", "ddp")


def _subfolder(workdir: str, name: str) -> str:
    folder = Path(workdir) / name  # each topic its own folder: their file names may collide
    folder.mkdir(exist_ok=True)
    return str(folder)


def _topic_group(name: str, quick: bool) -> tuple:
    return (
        # in this process: a topic isolates what it measures itself (some start processes of their own)
        lambda work, _: {name: importlib.import_module(name).measure(_subfolder(work, name), quick)},
        lambda results: importlib.import_module(name).render(results[name]),
    )


def _groups(quick: bool) -> dict:
    """Group name -> (measure(workdir, prep_dir) -> {bench.json key: result}, render(results) -> str)."""
    size = "tiny" if quick else "vit-b"
    patches = 4 if quick else 8
    return {
        "training": (
            lambda work, _: {"training": isolated(pipeline.bench_training, size, work, 5 if quick else 20)},
            pipeline.render_training,
        ),
        "encoder": (
            lambda work, _: {"encoder": isolated(pipeline.bench_encoder, size, work, 3 if quick else 2)},
            pipeline.render_encoder,
        ),
        "cache": (
            lambda work, _: {
                "cache": isolated(pipeline.bench_cache, size, work, patches, "auto"),
                "cache_fp32": isolated(pipeline.bench_cache, size, work, patches, "fp32"),
            },
            pipeline.render_cache,
        ),
        "prepare": (
            lambda _, prep: {
                "prepare": isolated(
                    pipeline.bench_prepare, (6, 256, 512) if quick else (165, 768, 1024), prep
                )
            },
            pipeline.render_prepare,
        ),
        "predict": (
            lambda work, _: {"predict": isolated(pipeline.bench_predict, size, work)},
            pipeline.render_predict,
        ),
        "stream": (
            lambda work, _: {
                "stream": [
                    isolated(pipeline.bench_stream, work, depth, *((256, 384) if quick else (768, 1024)))
                    for depth in ((2, 6) if quick else (8, 165))
                ]
            },
            pipeline.render_stream,
        ),
        **{name: _topic_group(name, quick) for name in TOPICS},
    }


def render(results: dict) -> str:
    """BENCHMARKS.md text from the measured results (groups in their fixed order, numbered)."""
    groups = _groups(results["quick"])
    sections = [
        draw(results).replace("## ", f"## {number}. ", 1)
        for number, draw in enumerate((draw for _, draw in groups.values()), start=1)
    ]
    return f"""# Benchmarks

Measured by `make bench` ({"quick mode, tiny sizes" if results["quick"] else "full sizes"}) on
{results["machine"]}, {results["date"]}; torch {results["torch"]}, transformers {results["transformers"]}.
Every figure is measured by `benchmarks/run_benchmarks.py`, each group in a fresh process (so peak
RSS is its own); reproduce with `make bench` (writes `bench.json` and this file), or one group with
`make bench ONLY=GROUP` (groups: {", ".join(groups)}).

""" + "\n".join(sections)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (used by the tests)")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--json", default="bench.json")
    parser.add_argument("--render", action="store_true", help="only rewrite --out from an existing --json")
    parser.add_argument("--only", action="append", choices=list(_groups(False)), help="re-measure this group")
    args = parser.parse_args(argv)
    if args.render:
        Path(args.out).write_text(render(json.loads(Path(args.json).read_text())))
        return
    import torch
    import transformers

    results = json.loads(Path(args.json).read_text()) if args.only else {}
    if args.only and results.get("quick") != args.quick:
        parser.error(
            f"--only: {args.json} was measured {'with' if results.get('quick') else 'without'} --quick"
        )
    results.update(
        quick=args.quick,
        machine=machine(),
        date=date.today().isoformat(),
        torch=torch.__version__,
        transformers=transformers.__version__,
    )
    with tempfile.TemporaryDirectory() as prep_dir, tempfile.TemporaryDirectory() as work:
        for name, (measure, _) in _groups(args.quick).items():
            if not args.only or name in args.only:
                print(f"measuring {name} ...", flush=True)
                results.update(measure(work, prep_dir))
                Path(args.json).write_text(json.dumps(results, indent=2))  # partial results survive a kill
    Path(args.out).write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
