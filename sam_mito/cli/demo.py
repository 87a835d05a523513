"""``sam-mito demo``: the offline end-to-end demo."""

from __future__ import annotations

import argparse

from sam_mito.cli.args import add_command, add_overwrite, integer


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "demo", "offline end to end: data, fine-tune the tiny base, compare", run)
    parser.add_argument("--out", default="demo_output", help="folder for every artifact")
    parser.add_argument("--data", help="EPFL-layout folder (training.tif + training_groundtruth.tif)")
    parser.add_argument("--steps", type=integer(1), default=300, help="training steps")
    add_overwrite(parser, "an output folder")


def run(args: argparse.Namespace) -> None:
    from sam_mito.demo import run_demo
    from sam_mito.files import check_outputs
    from sam_mito.measurement.summary import summary_text

    check_outputs({"--out": args.out}, {"--data": args.data}, overwrite=args.overwrite)
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
    files = prediction["measurement_files"]
    print(
        f"its objects measured (sam-mito measure):  {args.out}/{files['table']}, "
        f"{args.out}/{files['summary']}, {args.out}/{files['figure']}"
    )
    print(summary_text(prediction["measurement"]))
