"""The terminal skin: parse flags, call the library, render, turn RagError into one clean line.

Nothing here that a notebook user needs; heavy imports happen inside the commands that use them.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rag.errors import RagError

app = typer.Typer(
    help="rag: a local retrieval assistant over a reading list of research papers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="Index root (default: RAG_HOME, else ./index of the checkout).")]
ListOpt = Annotated[Optional[Path], typer.Option("--list", help="Reading list (default: RAG_LIST_PATH, else seeds/reading_list.md).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings_from(**overrides):
    """Settings from the environment, with flags (non-None values) on top."""
    from rag.settings import Settings

    return Settings().with_overrides(**overrides)


def clean_errors(fn):
    """Turn library errors into `error: ...` on stderr and exit code 1 (2 for usage errors stays typer's)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RagError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def ask_main() -> None:
    """Entry point of the `ask` command: the same as `rag ask`."""
    sys.argv[0] = "ask"
    command = typer.main.get_command(app).commands.get("ask")  # type: ignore[attr-defined]
    if command is None:
        typer.echo("error: the index is not built yet; run `rag build`", err=True)
        raise SystemExit(1)
    command.main(prog_name="ask")
