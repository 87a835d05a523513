"""``sam-mito score``: a predicted volume against its ground truth."""

from __future__ import annotations

import argparse

from sam_mito.errors import SamMitoError


def add_parser(commands: argparse._SubParsersAction) -> None:
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from sam_mito.evaluation.scoring import score_table, score_volumes
    from sam_mito.hub.cards import ModelCardInfo

    card = ModelCardInfo.load(args.model) if args.model else None  # checked before the long work
    if card is not None:
        from sam_mito.volumes.reading import open_volume

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
