"""Dataset commands: ``paddyclf prepare``, ``audit`` and ``nonleaf``."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .common import Command


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images", required=True, help="class-per-folder tree: DIR/<class>/<image> or DIR/<split>/<class>/<image>"
    )
    parser.add_argument("--out", required=True, help="folder for metadata.csv and label2id.json")
    parser.add_argument("--valid-fraction", type=float, default=0.2, help="stratified valid share (default: 0.2)")
    parser.add_argument("--test-fraction", type=float, default=0.0, help="stratified test share (default: 0)")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")
    parser.add_argument(
        "--no-dedupe", action="store_true", help="split image by image, without grouping duplicates (leaks)"
    )
    parser.add_argument(
        "--keep-splits", action="store_true", help="keep the tree's own split folders (and warn about their leaks)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes for hashing (default: all cores)")


def run_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_dataset

    metadata, label2id = prepare_dataset(
        args.images,
        args.out,
        args.valid_fraction,
        args.test_fraction,
        args.seed,
        dedupe=not args.no_dedupe,
        keep_splits=args.keep_splits,
        workers=args.workers,
        progress=sys.stderr.isatty(),
    )
    print(f"Wrote {metadata} and {label2id}")
    return 0


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metadata", required=True, help="metadata CSV (path,label[,split])")
    parser.add_argument("--label2id", default=None, help="label map; labels missing from it are an error")
    parser.add_argument(
        "--output-dir", default="audit", help="audit.csv, audit.json, contact_sheet.png (default: audit)"
    )
    parser.add_argument("--cache-dir", default=None, help="fingerprint cache (default: <output-dir>/cache)")
    parser.add_argument("--workers", type=int, default=None, help="processes for hashing (default: all cores)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any duplicate group crosses splits")


def run_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.audit import format_summary
    from ..data.audit import run_audit as audit_dataset

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1 (got {args.workers}).")
    report = audit_dataset(
        args.metadata, args.label2id, args.output_dir, args.cache_dir, args.workers, sys.stderr.isatty()
    )
    print(format_summary(report, Path(args.output_dir)))
    return 1 if args.strict and report["cross_split_groups"] else 0


def add_nonleaf_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.nonleaf import DEFAULT_SIZE, KINDS

    parser.add_argument("--out", required=True, help=f"folder for <kind>/ sub-folders ({', '.join(KINDS)})")
    parser.add_argument("--per-kind", type=int, default=20, help="images per kind (default: 20)")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help=f"square size in pixels (default: {DEFAULT_SIZE})"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run_nonleaf(args: argparse.Namespace) -> int:
    from ..data.nonleaf import make_nonleaf_images

    if args.per_kind < 1 or args.size < 32:
        raise UserError("--per-kind must be >= 1 and --size >= 32.")
    paths = make_nonleaf_images(args.out, args.per_kind, args.seed, args.size)
    print(f"Wrote {len(paths)} non-leaf images to {args.out}/")
    return 0


COMMANDS = {
    "prepare": Command("metadata.csv + label2id.json from a class-per-folder tree", add_prepare_arguments, run_prepare),
    "audit": Command(
        "find duplicates, leaks across splits, label conflicts and unreadable files", add_audit_arguments, run_audit
    ),
    "nonleaf": Command(
        "generate photos that are not leaves (for `evaluate --ood`)", add_nonleaf_arguments, run_nonleaf
    ),
}
