"""The command line answers ``--help`` at once, shows its defaults, and speaks one flag language."""

import argparse
import subprocess
import sys

import pytest

from sam_mito.cli.main import build_parser, main
from sam_mito.cli.train import help_parser
from sam_mito.training.config import parse_config
from sam_mito.training.options import GROUPS, ChangedDefaults, SamMitoOptions

HEAVY = ("torch", "transformers", "scipy", "accelerate", "numpy", "datasets")


def _commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {**action.choices, "train": help_parser()}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize(
    "argv", [["--help"], ["predict", "--help"], ["train", "--help"], ["score", "--help"]]
)
def test_help_imports_nothing_heavy(argv):
    code = (
        "import sys\nfrom sam_mito.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: sam-mito" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (
            "predict",
            ["--threshold THRESHOLD", "(default: 0.5)", "(default: 10)", "(default: 32)", "(default: 7)"],
        ),
        ("prepare", ["--patch-size PATCH_SIZE", "(default: 256)", "(default: 0.1)", "(default: 24)"]),
        ("evaluate", ["(default: test)", "(default: union instance tile grid)", "(default: auto)"]),
        ("demo", ["(default: 300)", "(default: demo_output)"]),
        ("train", ["(default: facebook/sam-vit-base)", "(default: 1e-05)", "(default: union)"]),
    ],
)
def test_help_shows_every_default(command, shown):
    text = " ".join(_commands()[command].format_help().split())
    assert all(" ".join(item.split()) in text for item in shown), text


def test_one_flag_language():
    commands = _commands()
    for name, parser in commands.items():
        assert not [flag for flag in _flags(parser) if "_" in flag], name  # dashes everywhere
        outputs = {flag for flag in _flags(parser) if flag in ("--output", "--json", "--output-dir")}
        assert not outputs, (name, outputs)  # what a command writes is --out or --NAME-out
    assert {"--out", "--labels-out", "--probabilities-out"} <= _flags(commands["predict"])
    for name in ("predict", "evaluate", "train"):
        assert {"--precision", "--prompt-mode"} <= _flags(commands[name]), name
    for name in ("prepare", "evaluate", "train"):
        push = next(a for a in commands[name]._actions if "--push-to-hub" in a.option_strings)
        assert push.metavar == "REPO", name
    assert "--update-card" in _flags(commands["score"]) and "--model" not in _flags(commands["score"])


def test_train_help_lists_sam_mitos_groups_first_then_points_to_the_rest():
    text = help_parser().format_help()
    positions = [text.index(f"\n{title}:") for title in GROUPS]
    assert positions == sorted(positions)
    documented = {name for names in GROUPS.values() for name in names}
    from dataclasses import fields

    assert documented == {spec.name for spec in (*fields(SamMitoOptions), *fields(ChangedDefaults))}
    assert "--help-all" in text


def test_train_help_all_lists_the_inherited_training_arguments(capsys):
    assert main(["train", "--help-all"]) == 0
    out = capsys.readouterr().out
    assert "--per_device_train_batch_size" in out and "--prompt-mode" in out


def test_train_takes_dashes_underscores_and_the_shared_flags(tmp_path):
    config = parse_config(
        [
            "--prompt-mode",
            "tile",
            "--box_jitter",
            "3",
            "--out",
            str(tmp_path / "run"),
            "--push-to-hub",
            "me/mito",
        ]
    )
    assert (config.prompt_mode, config.box_jitter, config.output_dir) == ("tile", 3, str(tmp_path / "run"))
    assert config.push_to_hub and config.hub_model_id == "me/mito"
    assert parse_config(["--push-to-hub", "false", "--max-steps", "2"]).push_to_hub is False
    assert parse_config(["--precision", "fp32"]).precision == "fp32"


REQUIRED = {
    "predict": ["--model", "m", "--input", "i.tif", "--out", "o.tif"],
    "score": ["--prediction", "p.tif", "--truth", "t.tif"],
    "prepare": ["--out", "d"],
    "evaluate": ["--base", "b", "--finetuned", "f", "--dataset", "d"],
    "demo": [],
}


@pytest.mark.parametrize("command", REQUIRED)
def test_an_unknown_flag_is_reported_by_its_command(cli, command):
    status, _, err = cli(command, *REQUIRED[command], "--bogus", "1")
    assert status == 2
    assert f"sam-mito {command}: error: unrecognized arguments: --bogus 1" in err
    assert err.startswith("usage: sam-mito " + command)


def test_a_failure_that_is_not_bad_input_exits_1_with_its_cause(cli, monkeypatch):
    from sam_mito.cli import score

    def broken(args):
        try:
            raise OSError("No space left on device")
        except OSError as err:
            raise RuntimeError("writing the scores failed") from err

    monkeypatch.setattr(score, "run", broken)
    status, _, err = cli("score", "--prediction", "p.tif", "--truth", "t.tif")
    assert status == 1 and "Traceback" not in err
    assert err.strip() == (
        "sam-mito score: failed: RuntimeError: writing the scores failed; caused by OSError: No space left "
        "on device (run with -v for the traceback)"
    )
    with pytest.raises(RuntimeError):  # -v: the whole traceback
        main(["-v", "score", "--prediction", "p.tif", "--truth", "t.tif"])
