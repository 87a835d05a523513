"""``sam-mito train``: fine-tune the mask decoder from a config file and ``TrainingArguments`` flags.

Every argument goes to :func:`sam_mito.training.config.parse_config` (``HfArgumentParser``,
which takes each field as ``--field_name`` or ``--field-name``). ``--help`` lists sam-mito's own
options, in groups, from :mod:`sam_mito.training.options` without importing transformers;
``--help-all`` adds every inherited ``TrainingArguments`` flag.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from sam_mito.cli.args import Formatter, add_command
from sam_mito.training.options import GROUPS, ChangedDefaults, SamMitoOptions

SUMMARY = "fine-tune the mask decoder: CONFIG.yaml|json, then any TrainingArguments flags"
USAGE = "sam-mito train [CONFIG.yaml|CONFIG.json] [--option value ...]"
DESCRIPTION = (
    "Fine-tune SAM's mask decoder. Values in CONFIG become defaults and flags after it override them. "
    "Every option is spelled with dashes or, as in transformers, underscores (--prompt-mode or "
    "--prompt_mode); boolean options take true/false (--embedding-cache false). Every "
    "transformers.TrainingArguments field is an option too (--max-steps, --per-device-train-batch-size, "
    "--bf16, ...): `sam-mito train --help-all` lists them."
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "train", SUMMARY, run, add_help=False, usage=USAGE)
    parser.set_defaults(passthrough=True)


def _default(spec) -> object:
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


def help_parser() -> argparse.ArgumentParser:
    """The parser whose help is ``sam-mito train --help`` (parsing itself is ``parse_config``'s)."""
    parser = argparse.ArgumentParser(
        prog="sam-mito train", usage=USAGE, description=DESCRIPTION, formatter_class=Formatter, add_help=False
    )
    specs = {spec.name: spec for spec in (*fields(SamMitoOptions), *fields(ChangedDefaults))}
    for title, names in GROUPS.items():
        group = parser.add_argument_group(title)
        for name in names:
            spec = specs[name]
            # the annotation as written; HfArgumentParser may since have resolved it to a type
            kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", str(spec.type))
            kind = kind.replace("|", " ").split()[0]
            group.add_argument(
                "--" + name.replace("_", "-"),
                default=_default(spec),
                choices=spec.metadata.get("choices"),
                metavar=None
                if spec.metadata.get("choices")
                else ("BOOL" if kind == "bool" else kind.split(" ")[0].upper()),
                help=spec.metadata["help"],
            )
    shared = parser.add_argument_group("flags every sam-mito command shares")
    shared.add_argument("--out", metavar="DIR", help="the output folder: the same as --output-dir")
    shared.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the model to REPO: --push-to-hub true --hub-model-id REPO",
    )
    shared.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    shared.add_argument("--help-all", action="store_true", help="also list every TrainingArguments option")
    return parser


def run(args: argparse.Namespace) -> None:
    if "--help-all" in args.extra:
        from transformers import HfArgumentParser

        from sam_mito.training.config import SamMitoConfig

        print(help_parser().format_help())
        print(HfArgumentParser(SamMitoConfig, prog="sam-mito train", usage=USAGE).format_help())
        return
    if "-h" in args.extra or "--help" in args.extra:
        print(help_parser().format_help())
        return
    from sam_mito.training.config import parse_config
    from sam_mito.training.trainer import train

    metrics = train(parse_config(args.extra)).metrics
    print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
