"""What every command module shares: the command table entry, subcommand assembly, and the error guard."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NamedTuple

from ..errors import TrainingInterruptedError, UserError


class Command(NamedTuple):
    """One subcommand: its ``--help`` line, the function that adds its flags, and the one that runs it."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_subcommands(parser: argparse.ArgumentParser, commands: dict[str, Command], dest: str) -> None:
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in commands.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))


def guarded(run: Callable[[], int]) -> int:
    """Run ``run``; a UserError becomes a one-paragraph message and exit code 2."""
    try:
        return run()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingInterruptedError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
