"""The README's command reference, made from the real `--help` output of `rag`, `ask` and every `rag` command.

    python scripts/readme_cli.py            # exit 1 and print a diff when README.md is out of date
    python scripts/readme_cli.py --write    # rewrite that part of README.md

The part lies between the markers below; tests/test_readme.py checks it with the same functions.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- cli-help: made by scripts/readme_cli.py from the real --help output; do not edit by hand -->"
END = "<!-- cli-help: end -->"
WIDTH = 100  # terminal columns the help is laid out for


def help_text(prog: str, args: list[str]) -> str:
    """What `<prog> <args> --help` prints on a terminal WIDTH columns wide, trailing spaces stripped."""
    import typer
    from click.testing import CliRunner

    from rag.cli.app import app

    command = typer.main.get_command(app)
    if prog == "ask":  # the `ask` entry point runs the `ask` command under its own name
        command = command.commands["ask"]  # type: ignore[attr-defined]
    result = CliRunner().invoke(command, [*args, "--help"], prog_name=prog, env={"COLUMNS": str(WIDTH)})
    if result.exit_code != 0:
        raise RuntimeError(f"{prog} {' '.join(args)} --help exited {result.exit_code}: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")


def commands() -> list[str]:
    """The `rag` commands, in the order `rag --help` lists them."""
    import typer

    from rag.cli.app import app

    return list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def block(prog: str, args: list[str]) -> str:
    return f"```\n$ {' '.join([prog, *args, '--help'])}\n\n{help_text(prog, args)}\n```"


def section() -> str:
    """The whole generated part: `rag --help` and `ask --help` in view, each command's help folded below."""
    parts = [START, block("rag", []), "", block("ask", []), "", "<details><summary>The --help of every command</summary>",
             ""]
    for name in commands():
        parts += [block("rag", [name]), ""]
    parts += ["</details>", END]
    return "\n".join(parts)


def with_section(text: str) -> str:
    """README text with the generated part replaced by a fresh one."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[:start] + section() + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="Rewrite README.md instead of checking it.")
    args = parser.parse_args(argv)
    text = README.read_text("utf-8")
    fresh = with_section(text)
    if args.write:
        README.write_text(fresh, "utf-8")
        return 0
    if fresh != text:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True), "README.md",
                                                   "README.md (from --help)"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
