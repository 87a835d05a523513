"""``sam-mito prepare``: EM volumes to a patched dataset folder (and optionally the Hub)."""

from __future__ import annotations

import argparse

from sam_mito.cli.args import add_command, add_overwrite, add_push_to_hub, finite, fraction, integer
from sam_mito.defaults import PATCH_SIZE, PATCH_STEP, TEST_FRACTION, VALIDATION_FRACTION

_PREPARE_INPUTS = ("--images", "--masks", "--test-images", "--test-masks")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands, "prepare", "patch EM volumes into a Hub-format dataset with box prompts", run
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
    patching.add_argument("--patch-size", type=integer(1), default=PATCH_SIZE, help="patch side in pixels")
    patching.add_argument(
        "--step", type=integer(1), default=PATCH_STEP, help="stride between patches in pixels"
    )
    patching.add_argument(
        "--min-foreground", type=fraction, default=0.0, help="drop patches at or below this fraction"
    )
    patching.add_argument(
        "--validation-fraction",
        type=fraction,
        default=VALIDATION_FRACTION,
        help="a contiguous block of slices becomes the validation split",
    )
    patching.add_argument(
        "--test-fraction", type=fraction, default=TEST_FRACTION, help="used only without a test volume"
    )
    parser.add_argument("--out", required=True, help="output dataset folder")
    add_overwrite(parser, "an output folder")
    add_push_to_hub(parser, "the dataset (push_to_hub plus its card)")


def run(args: argparse.Namespace) -> None:
    from sam_mito.data.patches import PatchConfig, prepare_dataset
    from sam_mito.files import check_outputs

    inputs = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in _PREPARE_INPUTS}
    check_outputs({"--out": args.out}, inputs, overwrite=args.overwrite)
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
    )
    counts = ", ".join(f"{split} {len(part)}" for split, part in dataset.items())
    print(f"wrote {args.out}: {counts} patches")
    if args.push_to_hub:
        from sam_mito.hub.uploads import push_dataset

        url = push_dataset(args.out, args.push_to_hub)
        print(f"pushed {args.out} to {args.push_to_hub}: {url}")
