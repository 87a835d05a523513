"""The command-line reference page, generated from sam-mito's own argparse parsers.

An MkDocs hook (``hooks:`` in ``mkdocs.yml``): at build time :func:`on_files` adds the page
``reference/cli.md``, rendered by :func:`cli_reference` from ``sam_mito.cli.main.build_parser``
and, for ``sam-mito train`` (whose parser passes every flag through to ``parse_config``), from
the parser of ``sam-mito train --help``. Nothing of it is written by hand, so it cannot drift from the code.
``python docs/gen_cli_reference.py`` prints the page.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

#: Where the generated page lives in the site (and in mkdocs.yml's nav).
PAGE = "reference/cli.md"

#: TrainingArguments' own documentation, for the fields sam-mito passes through unchanged.
TRAINING_ARGUMENTS_DOCS = (
    "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"
)


def subparsers(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The ``sam-mito`` sub-command parsers by name, in the order ``sam-mito --help`` lists them."""
    if parser is None:
        from sam_mito.cli.main import build_parser

        parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help or "" for choice in action._choices_actions}


def _cell(text: object) -> str:
    """``text`` made safe for one markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _code(text: object) -> str:
    return f"`{text}`"


def _value(action: argparse.Action) -> str:
    """What an option takes: its choices, its metavar, or nothing for a switch."""
    if action.nargs == 0:
        return ""
    if action.choices:
        value = " \\| ".join(_code(choice) for choice in action.choices)
    else:
        value = _code(action.metavar or action.dest.upper())
    return f"{value} ..." if action.nargs in ("+", "*") else value


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.required:
        return "required"
    if default is None or default is argparse.SUPPRESS or (action.nargs == 0 and default is False):
        return ""
    if isinstance(default, list | tuple):
        return " ".join(_code(item) for item in default)
    return _code(default)


def _options_table(actions: list[argparse.Action]) -> list[str]:
    rows = ["| option | value | default | description |", "|---|---|---|---|"]
    for action in actions:
        flags = ", ".join(_code(flag) for flag in action.option_strings)
        rows.append(f"| {flags} | {_value(action)} | {_default(action)} | {_cell(action.help or '')} |")
    return rows


@contextmanager
def _columns(width: int):
    """argparse wraps usage lines to $COLUMNS: fix it, so the page does not depend on the terminal."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    with _columns(100):
        usage = parser.format_usage().strip()
    return ["```text", usage, "```"]


def render_command(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    """One sub-command: its summary, usage and a table of options per argument group."""
    lines = [f"## sam-mito {name}", "", summary[:1].upper() + summary[1:] + ".", "", *_usage(parser), ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if not actions:
            continue
        title = "options" if group.title in ("options", "optional arguments") else group.title
        lines += [f"### {title[:1].upper() + title[1:]}", ""]
        lines += [*_options_table(actions), ""]
    return lines


def render_train(summary: str) -> list[str]:
    """``sam-mito train``: its own options, as ``sam-mito train --help`` groups them, then a pointer
    to the ``TrainingArguments`` fields it passes through."""
    from sam_mito.cli.train import help_parser

    lines = render_command("train", help_parser(), summary)
    return [
        *lines,
        "Every other field of "
        f"[`transformers.TrainingArguments`]({TRAINING_ARGUMENTS_DOCS}) is an option too, with its usual "
        "default, spelled with dashes or underscores; `sam-mito train --help-all` lists them.",
        "",
    ]


def cli_reference() -> str:
    """The whole command-line reference page, as markdown."""
    from sam_mito.cli.main import build_parser

    parser = build_parser()
    helps = _command_help(parser)
    commands = subparsers(parser)
    global_options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated from the argparse parsers by docs/gen_cli_reference.py at build time. -->",
        "",
        "`sam-mito COMMAND [options]`, `python -m sam_mito COMMAND [options]` and "
        "`accelerate launch [launch options] -m sam_mito COMMAND [options]` run the same command. "
        "`sam-mito COMMAND --help` prints the options below. Bad input ends with one "
        "`sam-mito COMMAND: error: ...` line and exit status 2 ([errors](../errors.md)).",
        "",
        *_usage(parser),
        "",
        "| command | what it does |",
        "|---|---|",
        *(f"| [`{name}`](#sam-mito-{name}) | {_cell(helps.get(name, ''))} |" for name in commands),
        "",
        "Options before the command:",
        "",
        *_options_table(global_options),
        "",
    ]
    for name, sub in commands.items():
        if name == "train":
            lines += render_train(helps.get(name, ""))
        else:
            lines += render_command(name, sub, helps.get(name, ""))
    return "\n".join(lines)


def on_files(files, config):
    """MkDocs hook: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files


if __name__ == "__main__":
    print(cli_reference())
