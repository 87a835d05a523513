"""``sam-mito predict``: slices and volumes to masks and instance labels."""

from __future__ import annotations

import argparse

from sam_mito.cli.args import add_device, fraction, integer, local, odd


def add_parser(commands: argparse._SubParsersAction) -> None:
    from sam_mito.data.prompts import GRID_SIZE, PREDICT_MODES
    from sam_mito.features.encoding import PRECISIONS
    from sam_mito.inference.postprocessing import (
        DEFAULT_FILL_HOLES,
        DEFAULT_MIN_SIZE,
        DEFAULT_MIN_SIZE_2D,
        DEFAULT_OPENING,
    )
    from sam_mito.inference.zcontext import DEFAULT_Z_WEIGHTING, DEFAULT_Z_WINDOW, Z_WEIGHTINGS

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
        type=integer(1),
        help="tile side in pixels, at most the model's input size (default: the model's training patch)",
    )
    parser.add_argument(
        "--overlap", type=integer(0), default=0, help="minimum tile overlap in pixels, blended (default 0)"
    )
    parser.add_argument(
        "--halo",
        type=integer(0),
        help="context margin: each pass sees the tile plus this many pixels per side (default 32)",
    )
    parser.add_argument("--grid-size", type=integer(1), default=GRID_SIZE, help="grid mode: points per side")
    parser.add_argument("--threshold", type=fraction, default=0.5, help="probability threshold")
    cleanup = parser.add_argument_group(
        "3D context and clean-up (defaults measured on EPFL, see BENCHMARKS.md)"
    )
    cleanup.add_argument(
        "--z-window",
        type=odd,
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
        type=integer(0),
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
        type=integer(0),
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
    add_device(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from sam_mito.files import check_outputs
    from sam_mito.inference.postprocessing import PostProcessing
    from sam_mito.inference.segmenter import Segmenter, check_output_file, check_tile
    from sam_mito.inference.volume_prediction import predict_volume
    from sam_mito.models.devices import resolve_device
    from sam_mito.models.loading import load_sam

    inputs = {"--input": args.input, "--boxes": args.boxes, "--model": local(args.model)}
    outputs = {"--output": args.output, "--probabilities": args.probabilities, "--labels": args.labels}
    check_outputs(outputs, inputs)
    for flag, path in outputs.items():
        if path is not None and not str(path).endswith(".zarr"):  # a .zarr store is a folder, resumed
            check_output_file(path, name=flag)
    device = resolve_device(args.device)
    post = PostProcessing(
        threshold=args.threshold,
        z_window=args.z_window,
        z_weighting=args.z_weighting,
        opening=args.opening,
        fill_holes=args.fill_holes,
        min_size=args.min_size,
    )
    model, processor = load_sam(args.model, device=device)
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
        post=post,
    )
    summary = predict_volume(
        segmenter,
        args.input,
        args.output,
        labels_path=args.labels,
        boxes_path=args.boxes,
        probabilities_path=args.probabilities,
        overwrite=args.overwrite,
    ).to_dict()
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
