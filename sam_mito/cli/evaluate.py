"""``sam-mito evaluate``: base vs fine-tuned on the same patches and prompts."""

from __future__ import annotations

import argparse

from sam_mito.cli.args import add_command, add_device, add_precision, add_push_to_hub, integer, local
from sam_mito.defaults import EVAL_MODES
from sam_mito.errors import SamMitoError


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "evaluate",
        "Dice/IoU of base vs fine-tuned on the same patches and prompts, plus a figure",
        run,
    )
    parser.add_argument("--base", required=True, help="base SAM: Hub id, local folder or sam-mito/tiny-base")
    parser.add_argument("--finetuned", required=True, help="fine-tuned SAM: Hub id or local folder")
    parser.add_argument("--dataset", required=True, help="folder or Hub id made by `sam-mito prepare`")
    parser.add_argument("--split", default="test", help="split to score")
    parser.add_argument(
        "--prompt-mode",
        nargs="+",
        choices=EVAL_MODES,
        default=list(EVAL_MODES),
        help="prompt modes to report",
    )
    parser.add_argument(
        "--out",
        help="folder for comparison.json, evaluation.md, comparison.png (default: --finetuned if a folder, "
        "else ./evaluation)",
    )
    parser.add_argument(
        "--embedding-cache-dir", help="embedding cache folder (default: $SAM_MITO_CACHE or ~/.cache/sam_mito)"
    )
    parser.add_argument("--figure-rows", type=integer(1), default=4, help="patches shown in comparison.png")
    add_push_to_hub(
        parser, "the fine-tuned folder's model files, card (rewritten with the results), metrics and figure"
    )
    add_precision(parser)
    add_device(parser)


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sam_mito.evaluation.compare import compare
    from sam_mito.files import check_outputs
    from sam_mito.hub.cards import CARD_DATA, RESULTS_FILE, ModelCardInfo
    from sam_mito.hub.uploads import model_files, push_model
    from sam_mito.models.devices import resolve_device

    model_dir = Path(args.finetuned) if Path(args.finetuned).is_dir() else None
    out = Path(args.out or model_dir or "evaluation")
    in_model_dir = model_dir is not None and out.resolve() == model_dir.resolve()
    if args.push_to_hub and not in_model_dir:
        raise SamMitoError("--push-to-hub needs --finetuned to be a local model folder and --out to be it")
    inputs = {"--dataset": local(args.dataset), "--base": local(args.base)}
    check_outputs({"--out": out}, inputs, replaced=False)
    device = resolve_device(args.device)
    if args.push_to_hub:
        model_files(model_dir)  # a folder that cannot be uploaded fails before the evaluation
    report = compare(
        args.base,
        args.finetuned,
        args.dataset,
        split=args.split,
        modes=tuple(args.prompt_mode),
        embedding_cache_dir=args.embedding_cache_dir,
        out_dir=out,
        figure_rows=args.figure_rows,
        precision=args.precision,
        device=device,
    )
    print(report["table"])
    print(f"wrote {out}/{RESULTS_FILE}, evaluation.md, comparison.png")
    for warning in getattr(report, "warnings", None) or []:
        print(f"warning: {warning}")
    if in_model_dir and (model_dir / CARD_DATA).exists():
        card = ModelCardInfo.load(model_dir)
        card.add_comparison(report, figure="comparison.png")
        card.write(model_dir)
        print(f"updated {model_dir}/README.md with the results")
    if args.push_to_hub:
        commit = push_model(model_dir, args.push_to_hub)
        print(f"pushed {', '.join(model_files(model_dir))} to {args.push_to_hub}: {commit.commit_url}")
