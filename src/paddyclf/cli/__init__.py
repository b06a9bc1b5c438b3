"""The ``paddyclf`` command line: a thin layer over the package's functions.

Every subcommand parses flags, calls one function, and turns :class:`~paddyclf.errors.UserError` into
one clear paragraph on stderr with exit code 2. Each module here holds one group of commands and
its ``COMMANDS`` table; this module only assembles them:

- :mod:`.train`: ``train``, ``demo`` (and the root ``train_<model>.py`` scripts);
- :mod:`.data`: ``prepare``, ``audit``, ``nonleaf``;
- :mod:`.use`: ``evaluate``, ``calibrate``, ``predict``, ``explain``, ``compare``;
- :mod:`.selection`: ``cv``, ``tune``;
- :mod:`.export`: ``export``;
- :mod:`.serve`: ``serve``, ``serve-export``;
- :mod:`.registry`: ``registry add | list | show | promote | rollback``;
- :mod:`.benchmark`: ``benchmark <name>``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import benchmark, data, export, registry, selection, serve, train, use
from .common import Command, add_subcommands, guarded, with_config_file
from .train import train_script

COMMANDS: dict[str, Command] = {
    **train.COMMANDS,
    **data.COMMANDS,
    **use.COMMANDS,
    **selection.COMMANDS,
    **export.COMMANDS,
    **serve.COMMANDS,
    **registry.COMMANDS,
    **benchmark.COMMANDS,
}


def build_parser() -> argparse.ArgumentParser:
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="paddyclf", description="Rice leaf-disease classification.")
    return parser, add_subcommands(parser, COMMANDS, "command")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _build_parsers()
    args = parser.parse_args(argv)

    def run() -> int:
        config_file = getattr(args, "config", None)
        if config_file is None:
            return COMMANDS[args.command].run(args)
        # a --config file's values enter as flags before the command line's own: argparse checks and
        # converts them like typed flags, and the command line overrides them
        full = parser.parse_args(with_config_file(argv, args.command, commands[args.command], config_file))
        return COMMANDS[args.command].run(full)

    return guarded(run)


def entry() -> NoReturn:
    """The ``paddyclf`` console script and ``python -m paddyclf``: :func:`main`, then a quick exit.

    When a command returns, its files are written (atomically) and closed, and what is left of the
    process is the interpreter's teardown of torch's and torchvision's native libraries: about 1.3 s
    on 2 cores (``python -c "import torchvision"`` spends 1.3 s exiting after 3.8 s importing), paid
    by every command, a one-photo ``predict`` as much as a ``train``. So the exit handlers run
    (``atexit``: logging, multiprocessing's children, ``weakref.finalize``), the streams are flushed,
    and the process ends without tearing its modules down. A command that raised exits as usual, with
    its traceback. Python callers and the tests use :func:`main`, which returns.
    """
    code = main()
    atexit._run_exitfuncs()  # what a normal exit runs first; os._exit skips only the module teardown
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


__all__ = ["COMMANDS", "build_parser", "entry", "main", "train_script"]
