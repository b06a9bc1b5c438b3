"""The diagnosis app: ``paddyclf serve`` and ``serve-export``."""

from __future__ import annotations

import argparse

from ..options import add_config_arguments, config_from_args
from .common import Command


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from ..serve.config import ServeConfig

    add_config_arguments(parser, ServeConfig())


def run_serve(args: argparse.Namespace) -> int:
    from ..serve.config import ServeConfig
    from ..serve.server import serve

    serve(config_from_args(args, ServeConfig()))
    return 0


def add_serve_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="the history folder of `paddyclf serve --data-dir`")
    parser.add_argument("--out", required=True, help="new dataset folder: images/<label>/, metadata.csv, label2id.json")


def run_serve_export(args: argparse.Namespace) -> int:
    from ..serve.export import export_reviewed

    done = export_reviewed(args.data_dir, args.out)
    counts = ", ".join(f"{label} {n}" for label, n in done["classes"].items())
    print(f"Wrote {done['photos']} reviewed photos to {done['out']} ({counts}).")
    print(f"Next: paddyclf audit --metadata {done['out']}/metadata.csv, then train on it (it has no split column).")
    return 0


COMMANDS = {
    "serve": Command(
        "the diagnosis web app and JSON API, with history and expert review (needs the [serve] extra)",
        add_serve_arguments,
        run_serve,
    ),
    "serve-export": Command(
        "the expert-reviewed photos of a `serve` history as a dataset (images + metadata.csv + label2id.json)",
        add_serve_export_arguments,
        run_serve_export,
    ),
}
