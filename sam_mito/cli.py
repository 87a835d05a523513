"""The ``sam-mito`` command: ``prepare | train | evaluate | predict | score | demo``, thin over the library."""

from __future__ import annotations

import argparse
import logging
import sys

from .cli_args import finite, fraction, integer, local
from .cli_volumes import add_predict, add_score
from .errors import SamMitoError

logger = logging.getLogger("sam_mito")


def _add_prepare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prepare", help="patch EM volumes into a Hub-format dataset with box prompts"
    )
    source = parser.add_argument_group("input (real data or --synthetic)")
    source.add_argument("--images", help="training image stack (TIFF) or folder of PNG/TIFF slices")
    source.add_argument("--masks", help="training mask stack or folder (file names match the images)")
    source.add_argument("--test-images", help="test image stack or folder (becomes the test split)")
    source.add_argument("--test-masks", help="test mask stack or folder")
    source.add_argument(
        "--mask-threshold", type=finite, help="binarise masks with values other than 0/1 or 0/255"
    )
    source.add_argument(
        "--synthetic", action="store_true", help="generate a synthetic EM volume pair instead"
    )
    source.add_argument("--slices", type=integer(1), default=24, help="synthetic: number of training slices")
    source.add_argument("--height", type=integer(1), default=512, help="synthetic: slice height")
    source.add_argument("--width", type=integer(1), default=512, help="synthetic: slice width")
    source.add_argument("--seed", type=integer(0), default=0, help="synthetic: scene seed")
    patching = parser.add_argument_group("patching and splits")
    patching.add_argument("--patch-size", type=integer(1), default=256)
    patching.add_argument("--step", type=integer(1), default=256)
    patching.add_argument(
        "--min-foreground", type=fraction, default=0.0, help="drop patches at or below this fraction"
    )
    patching.add_argument("--validation-fraction", type=fraction, default=0.1)
    patching.add_argument(
        "--test-fraction", type=fraction, default=0.1, help="used only without a test volume"
    )
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--push-to-hub", metavar="REPO", help="also upload it as a Hub dataset (push_to_hub plus its card)"
    )
    parser.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> None:
    from .data import PatchConfig, prepare_dataset
    from .files import check_output_dir, check_outputs

    inputs = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in _PREPARE_INPUTS}
    check_outputs({"--out": args.out}, inputs)
    check_output_dir(args.out, overwrite=args.overwrite)
    config = PatchConfig(
        size=args.patch_size,
        step=args.step,
        min_foreground=args.min_foreground,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
    )
    dataset = prepare_dataset(
        args.out,
        images=args.images,
        masks=args.masks,
        test_images=args.test_images,
        test_masks=args.test_masks,
        synthetic_shape=(args.slices, args.height, args.width) if args.synthetic else None,
        seed=args.seed,
        config=config,
        mask_threshold=args.mask_threshold,
        overwrite=args.overwrite,
        push_to_hub=args.push_to_hub,
    )
    counts = ", ".join(f"{split} {len(part)}" for split, part in dataset.items())
    print(f"wrote {args.out}: {counts} patches")


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="fine-tune the mask decoder: CONFIG.yaml|json, then any TrainingArguments flags",
        add_help=False,
    )
    parser.set_defaults(handler=_train, passthrough=True)


def _train(args: argparse.Namespace) -> None:
    from .config import parse_config
    from .training import train

    metrics = train(parse_config(args.extra))
    print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    from .prompts import EVAL_MODES

    parser = commands.add_parser(
        "evaluate", help="Dice/IoU of base vs fine-tuned on the same patches and prompts, plus a figure"
    )
    parser.add_argument("--base", required=True, help="base SAM: Hub id, local folder or sam-mito/tiny-base")
    parser.add_argument("--finetuned", required=True, help="fine-tuned SAM: Hub id or local folder")
    parser.add_argument("--dataset", required=True, help="folder or Hub id made by `sam-mito prepare`")
    parser.add_argument("--split", default="test", help="split to score")
    parser.add_argument(
        "--prompt",
        nargs="+",
        choices=EVAL_MODES,
        default=list(EVAL_MODES),
        help="prompt modes to report (default: all)",
    )
    parser.add_argument(
        "--out",
        help="folder for comparison.json, evaluation.md, comparison.png (default: --finetuned if a folder)",
    )
    parser.add_argument("--embedding-cache-dir", help="embedding cache folder")
    parser.add_argument("--figure-rows", type=integer(1), default=4, help="patches shown in comparison.png")
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="rewrite the fine-tuned folder's card and upload its model files, card, metrics and figure",
    )
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .evaluation import compare
    from .files import check_outputs
    from .hub import CARD_DATA, RESULTS_FILE, ModelCardInfo
    from .uploads import model_files, push_model

    model_dir = Path(args.finetuned) if Path(args.finetuned).is_dir() else None
    out = Path(args.out or model_dir or "evaluation")
    in_model_dir = model_dir is not None and out.resolve() == model_dir.resolve()
    if args.push_to_hub and not in_model_dir:
        raise SamMitoError("--push-to-hub needs --finetuned to be a local model folder and --out to be it")
    check_outputs({"--out": out}, {"--dataset": local(args.dataset)}, replaced=False)
    if args.push_to_hub:
        model_files(model_dir)  # a folder that cannot be uploaded fails before the evaluation
    report = compare(
        args.base,
        args.finetuned,
        args.dataset,
        split=args.split,
        modes=tuple(args.prompt),
        embedding_cache_dir=args.embedding_cache_dir,
        out_dir=out,
        figure_rows=args.figure_rows,
    )
    print(report["table"])
    print(f"wrote {out}/{RESULTS_FILE}, evaluation.md, comparison.png")
    if in_model_dir and (model_dir / CARD_DATA).exists():
        card = ModelCardInfo.load(model_dir)
        card.add_comparison(report, figure="comparison.png")
        card.write(model_dir)
        print(f"updated {model_dir}/README.md with the results")
    if args.push_to_hub:
        commit = push_model(model_dir, args.push_to_hub)
        print(f"pushed {', '.join(model_files(model_dir))} to {args.push_to_hub}: {commit.commit_url}")


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="offline end to end: data, fine-tune the tiny base, compare")
    parser.add_argument("--out", default="demo_output", help="folder for every artifact")
    parser.add_argument("--data", help="EPFL-layout folder (training.tif + training_groundtruth.tif)")
    parser.add_argument("--steps", type=integer(1), default=300, help="training steps")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo
    from .files import check_output_dir, check_outputs

    check_outputs({"--out": args.out}, {"--data": args.data})
    check_output_dir(args.out, overwrite=args.overwrite)
    report = run_demo(args.out, data=args.data, steps=args.steps, overwrite=args.overwrite)
    print(report["table"])
    prediction = report["prediction"]
    print(
        f"prompt-free full-slice prediction (fine-tuned, tile): Dice {prediction['dice']:.4f}, "
        f"IoU {prediction['iou']:.4f}, {prediction['encoder_passes']} encoder passes"
    )
    print(f"dataset (parquet + card):                 {args.out}/dataset")
    print(f"model, processor, card, comparison.json:  {args.out}/model")
    print(f"comparison figure:                        {args.out}/model/comparison.png")
    print(f"full-slice prediction:                    {args.out}/predict/mask.tif, prediction.png")
    volume = prediction["volume_scores"]
    print(
        f"as OME-Zarr with instance labels:         {args.out}/predict/mask.zarr, labels.zarr; scored "
        f"(scores.json): foreground IoU {volume['foreground_iou']:.4f}, instance F1 {volume['instance_f1']:.4f}"
    )


_PREPARE_INPUTS = ("--images", "--masks", "--test-images", "--test-masks")


def build_parser() -> argparse.ArgumentParser:
    """The ``sam-mito`` argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(prog="sam-mito", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(commands)
    return parser


_COMMANDS = [_add_prepare, _add_train, _add_evaluate, add_predict, add_score, _add_demo]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input prints one line and returns status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except SamMitoError as err:
        print(f"sam-mito {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
