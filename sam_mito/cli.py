"""The ``sam-mito`` command: ``prepare | train | evaluate | predict | score | demo``, thin over the library."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from .errors import SamMitoError

logger = logging.getLogger("sam_mito")


def _integer(minimum: int):
    """An argparse ``type``: an integer of at least ``minimum`` (argparse names the flag on error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected an integer >= {minimum}")
        return value

    return parse


def _odd(text: str) -> int:
    """An argparse ``type``: a positive odd integer."""
    value = _integer(1)(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"{value}: expected an odd number (1, 3, 5, ...)")
    return value


def _fraction(text: str) -> float:
    """An argparse ``type``: a finite number with 0 <= value < 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"{text}: expected a fraction, 0 <= value < 1")
    return value


def _finite(text: str) -> float:
    """An argparse ``type``: a finite number (no nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: expected a finite number")
    return value


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
        "--mask-threshold", type=_finite, help="binarise masks with values other than 0/1 or 0/255"
    )
    source.add_argument(
        "--synthetic", action="store_true", help="generate a synthetic EM volume pair instead"
    )
    source.add_argument("--slices", type=_integer(1), default=24, help="synthetic: number of training slices")
    source.add_argument("--height", type=_integer(1), default=512, help="synthetic: slice height")
    source.add_argument("--width", type=_integer(1), default=512, help="synthetic: slice width")
    source.add_argument("--seed", type=_integer(0), default=0, help="synthetic: scene seed")
    patching = parser.add_argument_group("patching and splits")
    patching.add_argument("--patch-size", type=_integer(1), default=256)
    patching.add_argument("--step", type=_integer(1), default=256)
    patching.add_argument(
        "--min-foreground", type=_fraction, default=0.0, help="drop patches at or below this fraction"
    )
    patching.add_argument("--validation-fraction", type=_fraction, default=0.1)
    patching.add_argument(
        "--test-fraction", type=_fraction, default=0.1, help="used only without a test volume"
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
    parser.add_argument("--figure-rows", type=_integer(1), default=4, help="patches shown in comparison.png")
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
    check_outputs({"--out": out}, {"--dataset": _local(args.dataset)}, replaced=False)
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


def _add_predict(commands: argparse._SubParsersAction) -> None:
    from .postprocessing import DEFAULT_FILL_HOLES, DEFAULT_MIN_SIZE, DEFAULT_MIN_SIZE_2D, DEFAULT_OPENING
    from .precision import PRECISIONS
    from .prompts import GRID_SIZE, PREDICT_MODES
    from .zcontext import DEFAULT_Z_WEIGHTING, DEFAULT_Z_WINDOW, Z_WEIGHTINGS

    parser = commands.add_parser(
        "predict", help="segment a slice, stack, slice folder or zarr into a 0/255 mask of the same shape"
    )
    parser.add_argument("--model", required=True, help="Hub id, local folder or sam-mito/tiny-base")
    parser.add_argument(
        "--input", required=True, help="TIFF/PNG image, multi-page TIFF stack, slice folder or .zarr"
    )
    parser.add_argument(
        "--output",
        required=True,
        help="mask to write (uint8, 0/255): .zarr (OME-Zarr; parallel and resumable) or TIFF",
    )
    parser.add_argument(
        "--labels", help="also write instance labels (uint32, 3D connected components): .zarr or TIFF"
    )
    parser.add_argument("--boxes", help="JSON: [[x0, y0, x1, y1], ...] or {slice index: boxes}")
    parser.add_argument(
        "--mode",
        choices=PREDICT_MODES,
        help="prompts per tile (default: boxes with --boxes, else tile)",
    )
    parser.add_argument(
        "--tile",
        type=_integer(1),
        help="tile side in pixels, at most the model's input size (default: the model's training patch)",
    )
    parser.add_argument(
        "--overlap", type=_integer(0), default=0, help="minimum tile overlap in pixels, blended (default 0)"
    )
    parser.add_argument(
        "--halo",
        type=_integer(0),
        help="context margin: each pass sees the tile plus this many pixels per side (default 32)",
    )
    parser.add_argument("--grid-size", type=_integer(1), default=GRID_SIZE, help="grid mode: points per side")
    parser.add_argument("--threshold", type=_fraction, default=0.5, help="probability threshold")
    cleanup = parser.add_argument_group(
        "3D context and clean-up (defaults measured on EPFL, see BENCHMARKS.md)"
    )
    cleanup.add_argument(
        "--z-window",
        type=_odd,
        default=DEFAULT_Z_WINDOW,
        help=f"average each slice's probabilities with its neighbours' over this many slices "
        f"(odd; 1: off; default {DEFAULT_Z_WINDOW})",
    )
    cleanup.add_argument(
        "--z-weighting",
        choices=Z_WEIGHTINGS,
        default=DEFAULT_Z_WEIGHTING,
        help=f"weights of the z-window's slices (default {DEFAULT_Z_WEIGHTING})",
    )
    cleanup.add_argument(
        "--opening",
        type=_integer(0),
        default=DEFAULT_OPENING,
        help=f"open each slice's mask with a disk of this radius in pixels (0: off; default {DEFAULT_OPENING})",
    )
    cleanup.add_argument(
        "--fill-holes",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_FILL_HOLES,
        help="fill holes in each slice's objects",
    )
    cleanup.add_argument(
        "--min-size",
        type=_integer(0),
        help=f"drop objects smaller than this: voxels of 3D objects in a stack (default {DEFAULT_MIN_SIZE}), "
        f"pixels in a single image (default {DEFAULT_MIN_SIZE_2D}); 0 keeps all",
    )
    parser.add_argument(
        "--probabilities", help="also write the float32 probability map here (.zarr with a .zarr --output)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished .zarr output and existing labels"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="encoder precision (default auto: bf16 where the hardware has it and a first-tile check passes)",
    )
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> None:
    from .files import check_outputs
    from .inference import Segmenter, check_output_file, check_tile
    from .modeling import load_sam
    from .predicting import predict_volume

    inputs = {"--input": args.input, "--boxes": args.boxes, "--model": _local(args.model)}
    outputs = {"--output": args.output, "--probabilities": args.probabilities, "--labels": args.labels}
    check_outputs(outputs, inputs)
    for flag, path in outputs.items():
        if path is not None and not str(path).endswith(".zarr"):  # a .zarr store is a folder, resumed
            check_output_file(path, name=flag)
    model, processor = load_sam(args.model)
    check_tile(args.tile, model.config, name="--tile")
    segmenter = Segmenter(
        model,
        processor,
        mode=args.mode or ("boxes" if args.boxes else "tile"),
        tile=args.tile,
        overlap=args.overlap,
        **({} if args.halo is None else {"halo": args.halo}),
        grid_size=args.grid_size,
        precision=args.precision,
    )
    summary = predict_volume(
        segmenter,
        args.input,
        args.output,
        labels_path=args.labels,
        boxes_path=args.boxes,
        probabilities_path=args.probabilities,
        threshold=args.threshold,
        z_window=args.z_window,
        z_weighting=args.z_weighting,
        opening=args.opening,
        fill_holes=args.fill_holes,
        min_size=args.min_size,
        overwrite=args.overwrite,
    )
    process = (
        f"process {summary['process']} of {summary['processes']}: " if summary.get("processes", 1) > 1 else ""
    )
    skipped = f" ({summary['slices_skipped']} already complete)" if summary["slices_skipped"] else ""
    halo = f" (+{summary['halo_slices']} for the z-window)" if summary.get("halo_slices") else ""
    print(
        f"{process}wrote {args.output}: mask {tuple(summary['shape'])}, {summary['slices_predicted']} slices "
        f"predicted{halo}{skipped}, {summary['encoder_passes']} encoder passes"
    )
    if "objects_removed" in summary:
        unit = "pixels" if len(summary["shape"]) == 2 else "voxels"
        minimum = summary["postprocessing"]["min_size"]
        print(
            f"dropped {summary['objects_removed']} objects under {minimum} {unit}, kept {summary['objects_kept']}"
        )
    if "instances" in summary:
        sizes = summary["instance_sizes"]
        quantiles = ", ".join(f"{k} {v:.0f}" for k, v in sizes.items()) if sizes else "none"
        print(f"wrote {args.labels}: {summary['instances']} instances; sizes in voxels: {quantiles}")


def _add_score(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score", help="foreground IoU/Dice and instance F1 of a predicted volume against its ground truth"
    )
    parser.add_argument("--prediction", required=True, help="binary mask: TIFF stack, slice folder or .zarr")
    parser.add_argument("--truth", required=True, help="ground-truth binary mask of the same shape")
    parser.add_argument(
        "--labels", help="instance labels of the prediction (default: its 3D connected components)"
    )
    parser.add_argument("--json", help="also write the scores here as JSON")
    parser.add_argument(
        "--model", help="model folder whose card and model-index get the scores (prompt-free, whole volume)"
    )
    parser.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> None:
    from .hub import ModelCardInfo
    from .scoring import score_table, score_volumes

    card = ModelCardInfo.load(args.model) if args.model else None  # checked before the long work
    if card is not None:
        from .volumes import open_volume

        made = open_volume(args.prediction).attrs.get("sam_mito", {})
        if made.get("mode") == "boxes":
            raise SamMitoError(
                f"{args.prediction}: predicted with box prompts; --model records prompt-free scores only"
            )
    scores = score_volumes(args.prediction, args.truth, labels=args.labels, json_path=args.json)
    print(score_table(scores))
    if args.json:
        print(f"wrote {args.json}")
    if card is not None:
        card.add_volume_scores(scores, volume=args.truth)
        card.write(args.model)
        print(f"updated {args.model}/README.md with the whole-volume scores")


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="offline end to end: data, fine-tune the tiny base, compare")
    parser.add_argument("--out", default="demo_output", help="folder for every artifact")
    parser.add_argument("--data", help="EPFL-layout folder (training.tif + training_groundtruth.tif)")
    parser.add_argument("--steps", type=_integer(1), default=300, help="training steps")
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


def _local(name: str | None) -> str | None:
    """``name`` if it is an existing local path (an input to protect), else None (a Hub id)."""
    from pathlib import Path

    return name if name is not None and Path(name).exists() else None


def build_parser() -> argparse.ArgumentParser:
    """The ``sam-mito`` argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(prog="sam-mito", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(commands)
    return parser


_COMMANDS = [_add_prepare, _add_train, _add_evaluate, _add_predict, _add_score, _add_demo]


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
