"""``sam-mito train``: fine-tune the mask decoder from a config file and TrainingArguments flags."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="fine-tune the mask decoder: CONFIG.yaml|json, then any TrainingArguments flags",
        add_help=False,
    )
    parser.set_defaults(handler=run, passthrough=True)


def run(args: argparse.Namespace) -> None:
    from sam_mito.training.config import parse_config
    from sam_mito.training.trainer import train

    metrics = train(parse_config(args.extra)).metrics
    print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
