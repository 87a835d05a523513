"""``sam-mito score``: a predicted volume against its ground truth."""

from __future__ import annotations

import argparse

from sam_mito.cli.args import add_command
from sam_mito.errors import SamMitoError


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "score",
        "foreground IoU/Dice, instance F1, mSA and AP of a predicted volume against its ground truth",
        run,
    )
    parser.add_argument("--prediction", required=True, help="binary mask: TIFF stack, slice folder or .zarr")
    parser.add_argument("--truth", required=True, help="ground-truth binary mask of the same shape")
    parser.add_argument(
        "--labels", help="instance labels of the prediction, an input (default: its 3D connected components)"
    )
    parser.add_argument(
        "--probabilities",
        metavar="P",
        help="the prediction's probabilities, an input (float in [0, 1] as predict --probabilities-out writes "
        "them, or uint8 0..255): each object's mean probability ranks it for AP (default: all equal)",
    )
    parser.add_argument("--out", help="also write the scores here as JSON (replaced if it exists)")
    parser.add_argument(
        "--matches",
        metavar="FILE",
        help="also write the instances matched at IoU >= 0.5, and the unmatched ones, here as CSV "
        "(replaced if it exists)",
    )
    parser.add_argument(
        "--update-card",
        metavar="MODEL_DIR",
        help="add the scores to this model folder's card and model-index (prompt-free predictions only)",
    )


def run(args: argparse.Namespace) -> None:
    from sam_mito.evaluation.scoring import score_table, score_volumes
    from sam_mito.files import check_output_file, check_outputs
    from sam_mito.hub.cards import ModelCardInfo

    outputs = {"--out": args.out, "--matches": args.matches}
    inputs = {
        "--prediction": args.prediction,
        "--truth": args.truth,
        "--labels": args.labels,
        "--probabilities": args.probabilities,
    }
    check_outputs(outputs, inputs, overwrite=True)
    for name, path in outputs.items():
        check_output_file(path, name=name)
    card = ModelCardInfo.load(args.update_card) if args.update_card else None  # checked before the long work
    if card is not None:
        from sam_mito.volumes.reading import open_volume

        made = open_volume(args.prediction).attrs.get("sam_mito", {})
        if made.get("mode") == "boxes":
            raise SamMitoError(
                f"{args.prediction}: predicted with box prompts; --update-card records prompt-free scores only"
            )
    scores = score_volumes(
        args.prediction,
        args.truth,
        labels=args.labels,
        probabilities=args.probabilities,
        json_path=args.out,
        matches_path=args.matches,
    )
    print(score_table(scores))
    for path in (args.out, args.matches):
        if path:
            print(f"wrote {path}")
    if card is not None:
        card.add_volume_scores(scores, volume=args.truth)
        card.write(args.update_card)
        print(f"updated {args.update_card}/README.md with the whole-volume scores")
