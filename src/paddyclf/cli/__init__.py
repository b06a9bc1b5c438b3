"""The ``paddyclf`` command line: a thin layer over the package's functions.

Every subcommand parses flags, calls one function, and turns :class:`~paddyclf.errors.UserError` into
one clear paragraph on stderr with exit code 2. Each module here holds one group of commands and
its ``COMMANDS`` table; this module only assembles them:

- :mod:`.train`: ``train``, ``demo`` (and the root ``train_<model>.py`` scripts);
- :mod:`.data`: ``prepare``, ``audit``, ``nonleaf``;
- :mod:`.use`: ``evaluate``, ``calibrate``, ``predict``, ``explain``, ``compare``;
- :mod:`.export`: ``export``;
- :mod:`.serve`: ``serve``, ``serve-export``;
- :mod:`.benchmark`: ``benchmark <name>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import benchmark, data, export, serve, train, use
from .common import Command, add_subcommands, guarded
from .train import train_script

COMMANDS: dict[str, Command] = {
    **train.COMMANDS,
    **data.COMMANDS,
    **use.COMMANDS,
    **export.COMMANDS,
    **serve.COMMANDS,
    **benchmark.COMMANDS,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddyclf", description="Rice leaf-disease classification.")
    add_subcommands(parser, COMMANDS, "command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: COMMANDS[args.command].run(args))


__all__ = ["COMMANDS", "build_parser", "main", "train_script"]
