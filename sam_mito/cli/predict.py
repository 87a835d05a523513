"""``sam-mito predict``: slices and volumes to masks and instance labels."""

from __future__ import annotations

import argparse

from sam_mito.cli.args import (
    add_command,
    add_device,
    add_overwrite,
    add_precision,
    fraction,
    integer,
    local,
    odd,
    positive,
)
from sam_mito.defaults import (
    DEFAULT_HALO,
    DEFAULT_Z_WEIGHTING,
    DEFAULT_Z_WINDOW,
    GRID_SIZE,
    PREDICT_MODES,
    THRESHOLD,
    Z_WEIGHTINGS,
)

#: Each path flag of ``predict`` by the parameter of ``predict_volume`` it fills.
OUTPUTS = {"--out": "out", "--probabilities-out": "probabilities_out", "--labels-out": "labels_out"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    from sam_mito.defaults import (
        DEFAULT_FILL_HOLES,
        DEFAULT_INSTANCES,
        DEFAULT_MIN_AREA,
        DEFAULT_MIN_SIZE,
        DEFAULT_MIN_SIZE_2D,
        DEFAULT_OPENING,
        DEFAULT_SEED_HEIGHT,
        INSTANCE_METHODS,
        MIN_SIZE_DEPTH,
    )

    parser = add_command(
        commands,
        "predict",
        "segment a slice, stack, slice folder or zarr into a 0/255 mask of the same shape",
        run,
    )
    files = parser.add_argument_group("model, input and outputs")
    files.add_argument("--model", required=True, help="Hub id, local folder or sam-mito/tiny-base")
    files.add_argument(
        "--input", required=True, help="TIFF/PNG image, multi-page TIFF stack, slice folder or .zarr"
    )
    files.add_argument(
        "--out",
        required=True,
        help="the mask (uint8, 0/255): .zarr (OME-Zarr; parallel and resumable), .tif, or .png for a single image",
    )
    files.add_argument(
        "--labels-out", help="also write instance labels (uint32, 3D connected components): .zarr or .tif"
    )
    files.add_argument(
        "--probabilities-out",
        help="also write the float32 probabilities: .zarr with a .zarr --out, else .tif",
    )
    files.add_argument(
        "--voxel-size",
        nargs=3,
        type=positive,
        metavar="NM",
        help="voxel size in nm, z y x (EPFL: 5 5 5): written into the .zarr outputs' OME-Zarr scale, "
        "which sam-mito measure reads",
    )
    add_overwrite(files, "outputs (a finished .zarr run, a file)")
    prompts = parser.add_argument_group("prompts and tiles")
    prompts.add_argument(
        "--prompt-mode",
        choices=PREDICT_MODES,
        help="prompts per tile (default: boxes with --boxes, else tile)",
    )
    prompts.add_argument("--boxes", help="JSON: [[x0, y0, x1, y1], ...] or {slice index: boxes}")
    prompts.add_argument(
        "--tile",
        type=integer(1),
        help="tile side in pixels, at most the model's input size (default: the model's training patch)",
    )
    prompts.add_argument(
        "--overlap", type=integer(0), default=0, help="minimum tile overlap in pixels, blended"
    )
    prompts.add_argument(
        "--halo",
        type=integer(0),
        default=DEFAULT_HALO,
        help="context margin: each encoder pass sees the tile plus this many pixels per side",
    )
    prompts.add_argument("--grid-size", type=integer(1), default=GRID_SIZE, help="grid mode: points per side")
    cleanup = parser.add_argument_group(
        "3D context and clean-up (defaults measured on EPFL, see BENCHMARKS.md)"
    )
    cleanup.add_argument("--threshold", type=fraction, default=THRESHOLD, help="probability threshold")
    cleanup.add_argument(
        "--z-window",
        type=odd,
        default=DEFAULT_Z_WINDOW,
        help="average each slice's probabilities with its neighbours' over this many slices (odd; 1: off)",
    )
    cleanup.add_argument(
        "--z-weighting",
        choices=Z_WEIGHTINGS,
        default=DEFAULT_Z_WEIGHTING,
        help="weights of the z-window's slices",
    )
    cleanup.add_argument(
        "--opening",
        type=integer(0),
        default=DEFAULT_OPENING,
        help="open each slice's mask with a disk of this radius in pixels (0: off)",
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
        help=f"drop objects smaller than this: voxels of 3D objects in a stack (default {DEFAULT_MIN_SIZE} "
        f"from {MIN_SIZE_DEPTH} slices deep, {DEFAULT_MIN_SIZE} x slices / {MIN_SIZE_DEPTH} in shallower "
        f"stacks), pixels in a single image (default {DEFAULT_MIN_SIZE_2D}); 0 keeps all",
    )
    cleanup.add_argument(
        "--min-area",
        type=integer(0),
        default=DEFAULT_MIN_AREA,
        help="stacks: also keep an object that crosses every slice when its mean cross-section has this "
        "many pixels (a few slices cannot show its 3D size); 0: judge it by --min-size alone",
    )
    instances = parser.add_argument_group("instances (--labels-out)")
    instances.add_argument(
        "--instances",
        choices=INSTANCE_METHODS,
        default=DEFAULT_INSTANCES,
        help="components: 3D connected objects (touching ones are one); watershed: each split where it "
        "narrows (seeded watershed of its distance transform)",
    )
    instances.add_argument(
        "--seed-height",
        type=positive,
        default=DEFAULT_SEED_HEIGHT,
        help="watershed: split where the narrowing between two centres dips this many voxels of distance "
        "below the lower one",
    )
    hardware = parser.add_argument_group("hardware")
    add_precision(hardware)
    add_device(hardware)


def run(args: argparse.Namespace) -> None:
    from sam_mito.files import check_outputs
    from sam_mito.inference.postprocessing import PostProcessing
    from sam_mito.inference.segmenter import Segmenter, check_tile
    from sam_mito.inference.volume_prediction import check_output_formats, predict_volume
    from sam_mito.models.devices import resolve_device
    from sam_mito.models.loading import load_sam
    from sam_mito.volumes.reading import open_volume

    outputs = {flag: getattr(args, name) for flag, name in OUTPUTS.items()}
    inputs = {"--input": args.input, "--boxes": args.boxes, "--model": local(args.model)}
    check_outputs(outputs, inputs, overwrite=args.overwrite, resumable=True)
    device = resolve_device(args.device)
    names = {"mask": "--out", "labels": "--labels-out", "probabilities": "--probabilities-out"}
    check_output_formats(  # the input read and every output checked before the model loads
        open_volume(args.input),
        names,
        mask=args.out,
        labels=args.labels_out,
        probabilities=args.probabilities_out,
    )
    post = PostProcessing(
        threshold=args.threshold,
        z_window=args.z_window,
        z_weighting=args.z_weighting,
        opening=args.opening,
        fill_holes=args.fill_holes,
        min_size=args.min_size,
        min_area=args.min_area,
        instances=args.instances,
        seed_height=args.seed_height,
    )
    model, processor = load_sam(args.model, device=device)
    check_tile(args.tile, model.config, name="--tile")
    segmenter = Segmenter(
        model,
        processor,
        mode=args.prompt_mode or ("boxes" if args.boxes else "tile"),
        tile=args.tile,
        overlap=args.overlap,
        halo=args.halo,
        grid_size=args.grid_size,
        precision=args.precision,
        post=post,
    )
    summary = predict_volume(
        segmenter,
        args.input,
        args.out,
        labels_path=args.labels_out,
        boxes_path=args.boxes,
        probabilities_path=args.probabilities_out,
        overwrite=args.overwrite,
        voxel_size=args.voxel_size,
    ).to_dict()
    _print_summary(args, summary)


def _print_summary(args: argparse.Namespace, summary: dict) -> None:
    process = (
        f"process {summary['process']} of {summary['processes']}: " if summary.get("processes", 1) > 1 else ""
    )
    skipped = f" ({summary['slices_skipped']} already complete)" if summary["slices_skipped"] else ""
    halo = f" (+{summary['halo_slices']} for the z-window)" if summary.get("halo_slices") else ""
    print(
        f"{process}wrote {args.out}: mask {tuple(summary['shape'])}, {summary['slices_predicted']} slices "
        f"predicted{halo}{skipped}, {summary['encoder_passes']} encoder passes"
    )
    if "objects_removed" in summary:
        unit = "pixels" if len(summary["shape"]) == 2 else "voxels"
        limits = summary["size_limits"]
        crossing = (
            f" (under {limits['min_area']} per slice if they cross all {summary['shape'][0]} slices)"
            if unit == "voxels" and limits["min_area"]
            else ""
        )
        spacing = (
            f"; limits x {limits['scale']:.2f}: objects continue into the next slice for "
            f"{limits['continuity']:.2f} of their voxels, as in slices far apart"
            if limits["scale"] < 1
            else ""
        )
        print(
            f"dropped {summary['objects_removed']} objects under {limits['min_size']} {unit}{crossing}, "
            f"kept {summary['objects_kept']}{spacing}"
        )
    if "instances" in summary:
        sizes = summary["instance_sizes"]
        quantiles = ", ".join(f"{k} {v:.0f}" for k, v in sizes.items()) if sizes else "none"
        print(f"wrote {args.labels_out}: {summary['instances']} instances; sizes in voxels: {quantiles}")
    if "components_split" in summary:
        print(
            f"watershed split {summary['components_split']} of {summary['components']} connected objects"
            + (
                f" ({summary['components_too_large']} too large, kept whole)"
                if summary["components_too_large"]
                else ""
            )
        )
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
