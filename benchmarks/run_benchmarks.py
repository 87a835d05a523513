#!/usr/bin/env python
"""`make bench`: run every benchmark group and write bench.json + BENCHMARKS.md.

Each measurement runs in a fresh process so its peak RSS is its own. `--quick` uses tiny sizes
(the test suite runs it so this script cannot rot); the default uses full sizes (the EPFL volume
shape, the ViT-B SAM architecture with random weights: speed does not depend on them).
`--only GROUP` re-measures some groups and keeps the others' figures from the existing bench.json.
Each group's wall seconds are recorded (``timings`` in bench.json) and tabled at the end of the report.

No group needs another to have run in the same invocation. Where one group's figure is another's
too (the SAM row of the families table is the ViT-B of the pipeline groups), the later group copies
it from the results at hand (this run's, or bench.json's under ``--only``) and measures it only if
it is missing.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import re
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402
from common import isolated, machine, model_dir  # noqa: E402

#: Benchmark modules of their own (``benchmarks/<name>.py`` with ``measure(workdir, quick)`` and
#: ``render(result)``), measured after the pipeline groups, in this order.
TOPICS = (
    "cli",
    "tiling",
    "zcontext",
    "volumes",
    "iou_head",
    "families",
    "cache_verify",
    "ddp",
    "gpu",
    "shortstacks",
    "instances",
    "measure",
)


def _subfolder(workdir: str, name: str) -> str:
    folder = Path(workdir) / name  # each topic its own folder: their file names may collide
    folder.mkdir(exist_ok=True)
    return str(folder)


def _topic_group(name: str, quick: bool) -> tuple:
    return (
        # in this process: a topic isolates what it measures itself (some start processes of their own)
        lambda work, _, __: {name: importlib.import_module(name).measure(_subfolder(work, name), quick)},
        lambda results: importlib.import_module(name).render(results[name]),
    )


def sam_from_pipeline(results: dict) -> dict:
    """The SAM row's parts of the families table that the pipeline groups in ``results`` measured.

    The pipeline groups use the same model as the families table's SAM row (the ViT-B architecture,
    or the tiny config in quick mode, with the same seeded random weights) and the same training
    patches. Returns ``{part: figures}`` in the families table's format, each with ``from``: the
    group that measured it.
    """
    known = {}
    if "encoder" in results:
        encoder = results["encoder"]
        row = next(r for r in encoder["paths"] if r["path"] == "sam-mito encode, fp32 (SDPA)")
        known["encoder"] = {
            "input": encoder["input"], "min_s": row["min_s"], "median_s": row["median_s"],
            "repeats": encoder["repeats"], "from": "encoder",
        }  # fmt: skip
    if "training" in results:
        training = results["training"]
        known["training"] = {**training["cached"], "from": "training"}
        if "cache" in training:  # bench.json files before 2026-11-25 lack it
            cache = training["cache"]
            known["cache"] = {
                "patches": cache["patches"], "mib_per_patch": cache["bytes_per_patch"] / 2**20,
                "seconds_per_patch": cache["seconds_per_patch"], "from": "training",
            }  # fmt: skip
    if "predict" in results:
        pred = results["predict"]
        known["slice"] = {
            "slice": pred["slice"], "seconds": pred["seconds"], "encoder_passes": pred["encoder_passes"],
            "precision": pred["precision"], "from": "predict",
        }  # fmt: skip
    return known


def _families_group(quick: bool) -> tuple:
    import families

    return (
        lambda work, _, results: {
            "families": families.measure(
                _subfolder(work, "families"), quick, known={"sam": sam_from_pipeline(results)}
            )
        },
        lambda results: families.render(
            families.with_known(results["families"], {"sam": sam_from_pipeline(results)})
        ),
    )


def _training(size: str, work: str, quick: bool) -> dict:
    isolated(model_dir, size, work)  # created in a process of its own: not in the cache build's peak RSS
    return isolated(pipeline.bench_training, size, work, 5 if quick else 12, 2)


def _groups(quick: bool) -> dict:
    """Group name -> (measure(workdir, prep_dir, results so far) -> {bench.json key: result}, render(results) -> str)."""
    size = "tiny" if quick else "vit-b"
    return {
        "training": (  # and the embedding cache: the cached run builds it
            lambda work, _, __: {"training": _training(size, work, quick)},
            pipeline.render_training,
        ),
        "encoder": (
            lambda work, _, __: {"encoder": isolated(pipeline.bench_encoder, size, work, 3 if quick else 1)},
            pipeline.render_encoder,
        ),
        "prepare": (
            lambda _, prep, __: {
                "prepare": isolated(
                    pipeline.bench_prepare, (6, 256, 512) if quick else (165, 768, 1024), prep
                )
            },
            pipeline.render_prepare,
        ),
        "predict": (
            lambda work, _, __: {"predict": isolated(pipeline.bench_predict, size, work)},
            pipeline.render_predict,
        ),
        **{
            name: _families_group(quick) if name == "families" else _topic_group(name, quick)
            for name in TOPICS
        },
    }


def render_timings(results: dict) -> str:
    """Markdown: wall seconds of each group and their total (the run's own wall time where it measured all)."""
    timings = results.get("timings", {})
    rows = [
        f"| {name} | {timings[name]['seconds']:.0f} | {timings[name]['seconds'] / 60:.1f} | {timings[name]['date']} |"
        for name in _groups(results["quick"])
        if name in timings
    ]
    total = sum(timings[name]["seconds"] for name in _groups(results["quick"]) if name in timings)
    run = results.get("run_seconds")
    whole = (
        f"The last whole run (every group, one invocation) took {run:.0f} s ({run / 60:.1f} min) from start to end."
        if run is not None
        else "No whole run recorded: the groups were measured in separate invocations (`--only`)."
    )
    return f"""## Time per group

Wall seconds of each group as last measured (its date; `--only` re-measures some and keeps the others).
Target for the whole `make bench`: under 30 minutes.

| group | seconds | minutes | measured |
|---|---|---|---|
{chr(10).join(rows)}
| **total** | **{total:.0f}** | **{total / 60:.1f}** | |

{whole}
"""


def render(results: dict) -> str:
    """BENCHMARKS.md text from the measured results (groups in their fixed order, numbered)."""
    groups = _groups(results["quick"])
    # a killed run's bench.json renders what it has
    draws = [draw for name, (_, draw) in groups.items() if name in results]
    numbers = itertools.count(1)  # every section numbered, some groups render two
    sections = re.sub(
        r"^## ",
        lambda _: f"## {next(numbers)}. ",
        "\n".join(draw(results) for draw in [*draws, render_timings]),
        flags=re.MULTILINE,
    )
    return (
        f"""# Benchmarks

Measured by `make bench` ({"quick mode, tiny sizes" if results["quick"] else "full sizes"}) on
{results["machine"]}, {results["date"]}; torch {results["torch"]}, transformers {results["transformers"]}.
Every figure is measured by `benchmarks/run_benchmarks.py`, each group in a fresh process (so peak
RSS is its own); reproduce with `make bench` (writes `bench.json` and this file), or one group with
`make bench ONLY=GROUP` (groups: {", ".join(groups)}).

"""
        + sections
    )


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
    timings = results.setdefault("timings", {})
    results.pop("run_seconds", None)  # set again below only if this invocation measures every group
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as prep_dir, tempfile.TemporaryDirectory() as work:
        for name, (measure, _) in _groups(args.quick).items():
            if not args.only or name in args.only:
                print(f"measuring {name} ...", flush=True)
                started = time.perf_counter()
                results.update(measure(work, prep_dir, results))
                seconds = time.perf_counter() - started
                timings[name] = {"seconds": seconds, "date": date.today().isoformat()}
                print(f"{name}: {seconds:.0f} s", flush=True)
                Path(args.json).write_text(json.dumps(results, indent=2))  # partial results survive a kill
    if not args.only:
        results["run_seconds"] = time.perf_counter() - start
        Path(args.json).write_text(json.dumps(results, indent=2))
    Path(args.out).write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
