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


def add_subcommands(
    parser: argparse.ArgumentParser, commands: dict[str, Command], dest: str
) -> dict[str, argparse.ArgumentParser]:
    """One subparser per command; returns them by name."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")
    parsers = {}
    for name, (help_text, add_arguments, _) in commands.items():
        parsers[name] = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(parsers[name])
    return parsers


def with_config_file(argv: list[str], command: str, parser: argparse.ArgumentParser, path: str) -> list[str]:
    """``argv`` with the flags of the ``--config`` file inserted right after ``command``, so that the
    command line's own flags, coming later, override them. Unknown keys are refused by name."""
    from ..options import config_file_flags, read_config_file

    values = read_config_file(path)
    flags = config_file_flags(values, parser.get_default, f"Config file {path}")
    # keys must name a flag exactly: argparse would take `epoch` for `--epochs` (an abbreviation)
    parsed, _ = parser.parse_known_args(flags)
    unknown = sorted(k for k in values if not hasattr(parsed, k.strip().lstrip("-").replace("-", "_")))
    if unknown:
        raise UserError(f"Config file {path} has keys that are not flags of `{command}`: {', '.join(unknown)}.")
    at = argv.index(command) + 1
    return [*argv[:at], *flags, *argv[at:]]


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
