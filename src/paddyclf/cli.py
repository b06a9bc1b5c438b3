"""The ``paddyclf`` command line: a thin layer over the package's functions.

Every subcommand parses flags, calls one function, and turns :class:`UserError` into one
clear paragraph on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .config import TrainConfig, add_config_arguments, config_from_args
from .errors import TrainingInterruptedError, UserError
from .models import model_arguments

DEMO_DIR = "data/demo"


# --------------------------------------------------------------------------- train


def add_train_arguments(parser: argparse.ArgumentParser, model: str | None = None) -> None:
    """Flags of :class:`TrainConfig`. With a fixed ``model`` (root scripts) ``--model`` is absent,
    and so is ``--reduction`` unless that model uses it."""
    defaults = TrainConfig() if model is None else TrainConfig(model=model)
    skip = set() if model is None else {"model"} | ({"reduction"} - model_arguments(model))
    add_config_arguments(parser, defaults, skip)


def run_train(args: argparse.Namespace, model: str | None = None) -> int:
    from .train import train  # imported late: keeps `--help` fast

    defaults = TrainConfig() if model is None else TrainConfig(model=model)
    train(config_from_args(args, defaults))
    return 0


# --------------------------------------------------------------------------- demo


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEMO_DIR, help=f"where the synthetic dataset goes (default: {DEMO_DIR})")
    parser.add_argument("--per-class", type=int, default=80, help="images per class (default: 80)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default: 25)")
    parser.add_argument("--image-size", type=int, default=160, help="training size in pixels (default: 160)")
    parser.add_argument("--output-dir", default="runs/demo", help="checkpoint and results (default: runs/demo)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default: 2)")
    parser.add_argument("--data-only", action="store_true", help="only generate the dataset, do not train")


def run_demo(args: argparse.Namespace) -> int:
    from .synthetic import dataset_exists, make_dataset

    if args.per_class < 5:
        raise UserError(f"--per-class must be >= 5 (got {args.per_class}).")
    if dataset_exists(args.data_dir):
        print(f"Using the synthetic dataset in {args.data_dir}/")
    else:
        print(f"Generating the synthetic paddy-leaf dataset in {args.data_dir}/ ...", flush=True)
        make_dataset(args.data_dir, per_class=args.per_class)
    if args.data_only:
        return 0
    from .train import train

    config = TrainConfig(
        metadata=f"{args.data_dir}/metadata.csv",
        label2id=f"{args.data_dir}/label2id.json",
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=32,
        head_lr=2e-3,
        base_lr=1e-3,
        device="cpu",
        num_workers=args.num_workers,
        output_dir=args.output_dir,
        save_history=True,
        plot=True,
    )
    train(config)
    return 0


# --------------------------------------------------------------------------- prepare


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
    from .prepare import prepare_dataset

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


# --------------------------------------------------------------------------- audit


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

    from .audit import format_summary, run_audit

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1 (got {args.workers}).")
    report = run_audit(args.metadata, args.label2id, args.output_dir, args.cache_dir, args.workers, sys.stderr.isatty())
    print(format_summary(report, Path(args.output_dir)))
    return 1 if args.strict and report["cross_split_groups"] else 0


# --------------------------------------------------------------------------- using a trained model


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt or an exported model")
    parser.add_argument("--metadata", required=True, help="metadata CSV")
    parser.add_argument("--label2id", default=None, help="label map; must equal the model's (default: it)")
    parser.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="split (default: valid)")
    parser.add_argument("--output-dir", default="evaluation", help="output folder (default: evaluation)")
    parser.add_argument("--tta", action="store_true", help="average the image and its horizontal flip")
    parser.add_argument(
        "--ood",
        nargs="+",
        default=None,
        metavar="DIR",
        help="folders of photos that are not like the training photos: AUROC and FPR at 95%% TPR of every score",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0)")
    add_backend_argument(parser)


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["torch", "onnxruntime", "openvino", "litert", "torchscript"],
        default=None,
        help="must match the file (default: from the file: .pt torch, .onnx onnxruntime, .xml openvino, .tflite "
        "litert, .ts torchscript)",
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import format_report, run_evaluation

    report = run_evaluation(
        args.checkpoint,
        args.metadata,
        args.label2id,
        args.split,
        args.output_dir,
        args.tta,
        args.batch_size,
        args.num_workers,
        ood_dirs=args.ood,
        backend=args.backend,
    )
    print(format_report(report))
    print(
        f"Wrote {args.output_dir}/evaluation.json, per_class.csv, confusion_matrix.png, reliability_diagram.png, "
        "risk_coverage.png, misclassified.csv"
    )
    return 0


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt or any exported model file")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders (searched recursively)")
    parser.add_argument("--top-k", type=int, default=3, help="classes per image (default: 3)")
    parser.add_argument("--output", default="preds.csv", help="CSV to write (default: preds.csv)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    add_backend_argument(parser)


def run_predict(args: argparse.Namespace) -> int:
    from collections import Counter

    from .predict import predict_files, write_predictions

    rows = predict_files(args.checkpoint, args.paths, args.top_k, args.batch_size, args.backend)
    write_predictions(rows, args.output, args.top_k)
    counts = Counter("error" if r["status"].startswith("error") else r["status"] for r in rows)
    print(f"Wrote {len(rows)} predictions to {args.output} (" + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")")
    return 0


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    from .ood import SCORES
    from .trust import DEFAULT_OOD_SCORE, DEFAULT_TARGET_ACCURACY

    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt (left untouched)")
    parser.add_argument("--metadata", required=True, help="metadata CSV: its train split gives the OOD statistics")
    parser.add_argument("--output", required=True, help="the calibrated checkpoint to write (a new file)")
    parser.add_argument("--label2id", default=None, help="label map; must equal the checkpoint's (default: it)")
    parser.add_argument(
        "--split", default="valid", choices=["valid", "test"], help="fit on this split (default: valid)"
    )
    parser.add_argument(
        "--target-accuracy",
        type=float,
        default=DEFAULT_TARGET_ACCURACY,
        help=f"unsure threshold: the lowest that keeps this accuracy on the answered images (default: "
        f"{DEFAULT_TARGET_ACCURACY})",
    )
    parser.add_argument("--unsure-below", type=float, default=None, help="a fixed unsure threshold instead")
    parser.add_argument(
        "--ood-score", choices=list(SCORES), default=DEFAULT_OOD_SCORE, help=f"default: {DEFAULT_OOD_SCORE}"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0)")


def run_calibrate(args: argparse.Namespace) -> int:
    from .trust import describe_fit, run_calibrate

    trust = run_calibrate(
        args.checkpoint, args.metadata, args.output, args.label2id, args.split, args.target_accuracy,
        args.unsure_below, args.ood_score, args.batch_size, args.num_workers, progress=sys.stderr.isatty(),
    )  # fmt: skip
    print(describe_fit(trust))
    print(f"Wrote {args.output}")
    return 0


def add_nonleaf_arguments(parser: argparse.ArgumentParser) -> None:
    from .nonleaf import DEFAULT_SIZE, KINDS

    parser.add_argument("--out", required=True, help=f"folder for <kind>/ sub-folders ({', '.join(KINDS)})")
    parser.add_argument("--per-kind", type=int, default=20, help="images per kind (default: 20)")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help=f"square size in pixels (default: {DEFAULT_SIZE})"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run_nonleaf(args: argparse.Namespace) -> int:
    from .nonleaf import make_nonleaf_images

    if args.per_kind < 1 or args.size < 32:
        raise UserError("--per-kind must be >= 1 and --size >= 32.")
    paths = make_nonleaf_images(args.out, args.per_kind, args.seed, args.size)
    print(f"Wrote {len(paths)} non-leaf images to {args.out}/")
    return 0


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photos to explain")
    parser.add_argument("--output-dir", default="explanations", help="output folder (default: explanations)")


def run_explain(args: argparse.Namespace) -> int:
    from .explain import explain_images

    for path in explain_images(args.checkpoint, args.images, args.output_dir):
        print(f"Wrote {path}")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from .export import DEFAULT_OPSET, FORMATS, ExportOptions

    defaults = ExportOptions()
    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt")
    parser.add_argument("--format", choices=list(FORMATS), default="onnx", help="default: onnx")
    parser.add_argument(
        "--output", required=True, help="file to write (.onnx, .xml for OpenVINO, .tflite, .ts); <file>.json beside it"
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    parser.add_argument("--calibration", default=None, help="INT8: metadata CSV whose train split calibrates")
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=defaults.calibration_images,
        help=f"INT8: calibration photos, a stratified subset (default: {defaults.calibration_images})",
    )
    parser.add_argument(
        "--validate", default=None, help="INT8: metadata CSV whose valid split gates accuracy (default: --calibration)"
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=defaults.max_accuracy_drop,
        help=f"INT8: fail, writing nothing, above this many points below float (default: {defaults.max_accuracy_drop})",
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for INT8 photos (default: 0)")


def run_export(args: argparse.Namespace) -> int:
    from .export import ExportOptions, export_model

    if args.calibration_images < 1 or args.max_accuracy_drop < 0:
        raise UserError("--calibration-images must be >= 1 and --max-accuracy-drop >= 0.")
    options = ExportOptions(
        opset=args.opset,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        validate=args.validate,
        max_accuracy_drop=args.max_accuracy_drop,
        num_workers=args.num_workers,
    )
    report = export_model(args.checkpoint, args.output, args.format, options)
    check = report["check"]
    if "max_abs_logit_difference" in check:
        difference, limit = check["max_abs_logit_difference"], check["tolerance"]
        detail = f"max abs logit difference vs PyTorch {difference:.2e} (limit {limit:g})"
    else:
        detail = (
            f"INT8 accuracy {check['int8_accuracy']:.4f} vs float {check['float_accuracy']:.4f} "
            f"({check['accuracy_drop_points']:+.2f} points drop, limit {check['max_accuracy_drop_points']:g}) on "
            f"{check['validation_images']} validation photos; top-1 agreement {check['top1_agreement']:.1%}, "
            f"verdict agreement {check['verdict_agreement']:.1%}"
        )
    print(f"Wrote {', '.join(report['files'])} ({report['size_bytes'] / 1e6:.2f} MB); {detail}")
    return 0


# --------------------------------------------------------------------------- serve


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from .serve.config import ServeConfig

    add_config_arguments(parser, ServeConfig(model=""))


def run_serve(args: argparse.Namespace) -> int:
    from .serve.config import ServeConfig
    from .serve.server import serve

    serve(config_from_args(args, ServeConfig(model="")))
    return 0


def add_serve_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="the history folder of `paddyclf serve --data-dir`")
    parser.add_argument("--out", required=True, help="new dataset folder: images/<label>/, metadata.csv, label2id.json")


def run_serve_export(args: argparse.Namespace) -> int:
    from .serve.export import export_reviewed

    done = export_reviewed(args.data_dir, args.out)
    counts = ", ".join(f"{label} {n}" for label, n in done["classes"].items())
    print(f"Wrote {done['photos']} reviewed photos to {done['out']} ({counts}).")
    print(f"Next: paddyclf audit --metadata {done['out']}/metadata.csv, then train on it (it has no split column).")
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS_JSON", help="results/<model_name>_metrics.json files")
    parser.add_argument("--output", default="comparison", help="output folder (default: comparison)")


def run_compare(args: argparse.Namespace) -> int:
    from .compare import compare_results, markdown_table

    rows = compare_results(args.results, args.output)
    print(markdown_table(rows), end="")
    print(f"Wrote {args.output}/comparison.md, comparison.csv, accuracy_vs_fps.png, size.png")
    return 0


# --------------------------------------------------------------------------- benchmarks


def add_benchmark_attention_arguments(parser: argparse.ArgumentParser) -> None:
    from .benchmarks.attention import DEFAULT_SIZES

    parser.add_argument(
        "--image-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help=f"image sizes (default: {' '.join(map(str, DEFAULT_SIZES))})",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="batch per step (default: 2 on CPU, 16 on CUDA)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--memory-budget-gb", type=float, default=8.0, help="memory budget for max batch (default: 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement, median kept (default: 5)")
    parser.add_argument(
        "--output",
        default="results/attention_benchmark",
        help="output prefix for .json/.md/.png (default: results/attention_benchmark)",
    )


def run_benchmark_attention(args: argparse.Namespace) -> int:
    from .benchmarks.attention import run_attention_benchmark
    from .train import resolve_device

    if min(args.image_sizes) < 32 or (args.batch_size is not None and args.batch_size < 1) or args.repeats < 1:
        raise UserError("--image-sizes must be >= 32, --batch-size and --repeats >= 1.")
    run_attention_benchmark(
        args.image_sizes,
        args.batch_size,
        str(resolve_device(args.device)),
        args.memory_budget_gb,
        args.output,
        repeats=args.repeats,
    )
    return 0


def add_benchmark_speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="a <model_name>_best.pt, or an exported file (timed on its runtime)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="throughput batch (default: 32)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every backend (default: torch's)")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per backend (default: 10)")
    parser.add_argument("--output", default=None, help="also write the results to this JSON file")


def run_benchmark_speed(args: argparse.Namespace) -> int:
    from .benchmarks.speed import run_speed_benchmark
    from .fileio import write_json

    if args.batch_size < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--batch-size, --repeats and --threads must be >= 1.")
    result = run_speed_benchmark(args.checkpoint, args.batch_size, args.threads, args.repeats)
    if args.output:
        write_json(args.output, result)
    return 0


def add_benchmark_train_arguments(parser: argparse.ArgumentParser) -> None:
    from .benchmarks.train_speed import PIPELINES

    parser.add_argument("--images", nargs="+", default=None, help="folder(s) of photos (class sub-folders optional)")
    parser.add_argument("--metadata", default=None, help="or a metadata CSV (its train split; valid split -> accuracy)")
    parser.add_argument("--label2id", default=None, help="label map for --metadata (default: beside the CSV)")
    parser.add_argument("--generate", type=int, default=0, help="add N synthetic 480x640 JPEGs (default: 0)")
    parser.add_argument("--image-size", type=int, default=224, help="training size (default: 224)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32], help="batch size(s), each run (default: 32)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers, both pipelines (default: 2)")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end epochs per pipeline, >= 2 (default: 2)")
    parser.add_argument("--model", default="MobileNetV3_Small_BoT_Linear", help="architecture (default: BoT-Linear)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda; on cuda, project = AMP (default: cpu)")
    parser.add_argument(
        "--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES), help="which to run (default: both)"
    )
    parser.add_argument("--seed", type=int, default=42, help="model init, split and augmentation seed (default: 42)")
    parser.add_argument(
        "--whole-run",
        action="store_true",
        help="also time whole processes: `paddyclf train` vs the plain timm loop, start-up and report included",
    )
    parser.add_argument("--output", default=None, help="also write the results to this JSON file")


def run_benchmark_train(args: argparse.Namespace) -> int:
    from .benchmarks.train_speed import run_train_benchmark
    from .fileio import write_json
    from .train import resolve_device

    if args.image_size < 32 or min(args.batch_size) < 1 or args.num_workers < 0 or args.generate < 0:
        raise UserError("--image-size must be >= 32, --batch-size >= 1, --num-workers and --generate >= 0.")
    result = run_train_benchmark(
        args.images,
        args.metadata,
        args.label2id,
        args.generate,
        args.image_size,
        args.batch_size,
        args.num_workers,
        args.epochs,
        args.model,
        resolve_device(args.device),
        args.pipelines,
        args.seed,
        args.whole_run,
    )
    if args.output:
        write_json(args.output, result)
    return 0


def add_training_benchmark_arguments(parser: argparse.ArgumentParser, epochs: int, output: str) -> None:
    """The flags of benchmarks that train models: data, seeds, the training setup, the output prefix."""
    parser.add_argument("--metadata", required=True, help="metadata CSV with train and valid splits (leak-free!)")
    parser.add_argument("--label2id", required=True, help="label map")
    parser.add_argument("--pretrained-weights", default=None, help="local timm ImageNet weights for the backbone")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument(
        "--epochs", type=int, default=epochs, help=f"epochs per run, early stopping off (default: {epochs})"
    )
    parser.add_argument("--train-limit", type=int, default=None, help="stratified training subset (e.g. 150)")
    parser.add_argument("--valid-limit", type=int, default=None, help="stratified validation subset")
    parser.add_argument("--model", default="MobileNetV3_Small_BoT_Linear", help="architecture (default: BoT-Linear)")
    parser.add_argument("--image-size", type=int, default=224, help="training size (default: 224)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default: 2)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--output", default=output, help=f"output prefix (default: {output})")


def training_benchmark_config(args: argparse.Namespace, **extra) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        metadata=args.metadata,
        label2id=args.label2id,
        pretrained=args.pretrained_weights is not None,
        pretrained_weights=args.pretrained_weights,
        epochs=args.epochs,
        patience=0,
        train_limit=args.train_limit,
        valid_limit=args.valid_limit,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        **extra,
    )


def add_benchmark_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    from .benchmarks.recipe import VARIANTS

    add_training_benchmark_arguments(parser, 12, "results/recipe_benchmark")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"default: all ({' '.join(VARIANTS)})")


def run_benchmark_recipe(args: argparse.Namespace) -> int:
    from .benchmarks.recipe import run_recipe_benchmark

    run_recipe_benchmark(training_benchmark_config(args), args.variants, args.seeds, args.output)
    return 0


def add_benchmark_trust_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_benchmark_arguments(parser, 10, "results/trust_benchmark")
    parser.add_argument("--recipe", default="field", help="training recipe (default: field)")
    parser.add_argument("--nonleaf", default=None, help="folder of non-leaf photos (default: `paddyclf nonleaf`'s set)")
    parser.add_argument("--no-open-set", action="store_true", help="skip the held-out-class runs")


def run_benchmark_trust(args: argparse.Namespace) -> int:
    from .benchmarks.trust import run_trust_benchmark

    base = training_benchmark_config(args, recipe=args.recipe)
    base.validate()
    run_trust_benchmark(base, args.seeds, args.nonleaf, not args.no_open_set, args.output)
    return 0


def add_benchmark_export_arguments(parser: argparse.ArgumentParser) -> None:
    from .export import FORMATS

    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt")
    parser.add_argument("--metadata", default=None, help="its valid split: accuracy; its train split: INT8 calibration")
    parser.add_argument(
        "--formats", nargs="+", default=["all"], help=f"formats, or all (default: all: {' '.join(FORMATS)})"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput batch (default: 32)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (default: 10)")
    parser.add_argument("--calibration-images", type=int, default=256, help="INT8 calibration photos (default: 256)")
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=1.0,
        help="INT8 gate in points; a format failing it is listed as failed (default: 1.0)",
    )
    parser.add_argument(
        "--output",
        default="results/export_benchmark",
        help="prefix of .json/.md/.png (default: results/export_benchmark)",
    )


def run_benchmark_export(args: argparse.Namespace) -> int:
    from .benchmarks.export import run_export_benchmark
    from .export import FORMATS

    if args.batch_size < 1 or args.rounds < 1 or args.calibration_images < 1 or (args.threads or 1) < 1:
        raise UserError("--batch-size, --rounds, --calibration-images and --threads must be >= 1.")
    formats = list(FORMATS) if args.formats == ["all"] else args.formats
    run_export_benchmark(
        args.checkpoint, args.metadata, formats, args.threads, args.output, args.batch_size, args.rounds,
        args.calibration_images, args.max_accuracy_drop,
    )  # fmt: skip
    return 0


def add_benchmark_dedupe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", nargs="*", default=[], help="folders of distinct real photos (sources)")
    parser.add_argument(
        "--lab-photos", type=int, default=200, help="generated lab photos added as sources (default: 200)"
    )
    parser.add_argument("--copies-of", type=int, default=100, help="plant copies of this many sources (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="copy and lab-photo seed (default: 0)")
    parser.add_argument("--output", default=None, help="also write the results to this JSON file")


def run_benchmark_dedupe(args: argparse.Namespace) -> int:
    from .benchmarks.dedupe import run_dedupe_benchmark
    from .fileio import write_json

    if args.lab_photos < 0 or args.copies_of < 0:
        raise UserError("--lab-photos and --copies-of must be >= 0.")
    result = run_dedupe_benchmark(args.images, args.lab_photos, args.copies_of, args.seed)
    if args.output:
        write_json(args.output, result)
    return 0


def add_benchmark_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a checkpoint or an exported model (as for `serve`)")
    parser.add_argument("--images", nargs="+", required=True, help="photos or folders to send")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default: 8)")
    parser.add_argument("--requests", type=int, default=400, help="requests per round, one photo each (default: 400)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating baseline/load rounds (default: 2)")
    parser.add_argument(
        "--malformed",
        type=float,
        default=0.0,
        help="fraction of requests with a bad file, each must get a 4xx (default: 0)",
    )
    parser.add_argument("--serve-args", default="", help="extra `paddyclf serve` flags, quoted (e.g. '--max-batch 16')")
    parser.add_argument(
        "--kill-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also SIGKILL a server mid-load and check that no acknowledged diagnosis was lost (default: on)",
    )
    parser.add_argument(
        "--output", default="results/serve_benchmark", help="prefix of .json/.md (default: results/serve_benchmark)"
    )


def run_benchmark_serve(args: argparse.Namespace) -> int:
    import shlex

    from .benchmarks.serve import run_serve_benchmark
    from .serve.server import require_serve_extra

    require_serve_extra()
    if args.concurrency < 1 or args.requests < 1 or args.rounds < 1 or not 0 <= args.malformed < 1:
        raise UserError("--concurrency, --requests and --rounds must be >= 1, and --malformed in [0, 1).")
    run_serve_benchmark(
        args.model, args.images, args.concurrency, args.requests, args.rounds, args.malformed,
        shlex.split(args.serve_args), args.output, args.kill_check,
    )  # fmt: skip
    return 0


BENCHMARKS: dict[str, tuple[str, Callable, Callable]] = {
    "attention": (
        "softmax vs linear BoT: time, memory, max batch vs image size",
        add_benchmark_attention_arguments,
        run_benchmark_attention,
    ),
    "train": (
        "training images/s: project pipeline vs a naive PIL/NCHW one and a plain timm loop",
        add_benchmark_train_arguments,
        run_benchmark_train,
    ),
    "dedupe": (
        "duplicate finding: recall on planted copies, false pairs among distinct photos",
        add_benchmark_dedupe_arguments,
        run_benchmark_dedupe,
    ),
    "recipe": (
        "fine-tuning recipes: the guide's, each addition alone, the field recipe, over seeds",
        add_benchmark_recipe_arguments,
        run_benchmark_recipe,
    ),
    "export": (
        "every export format side by side: size, accuracy, agreement, batch-1 latency, batch-32 throughput",
        add_benchmark_export_arguments,
        run_benchmark_export,
    ),
    "trust": (
        "calibration, unsure coverage and out-of-distribution detection (non-leaf photos, held-out classes)",
        add_benchmark_trust_arguments,
        run_benchmark_trust,
    ),
    "serve": (
        "the web app under concurrent load: requests/s and latency vs the bare predictor one photo at a time",
        add_benchmark_serve_arguments,
        run_benchmark_serve,
    ),
    "speed": (
        "inference speed of a checkpoint: PyTorch eager, channels_last, ONNX Runtime",
        add_benchmark_speed_arguments,
        run_benchmark_speed,
    ),
}


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, BENCHMARKS, "benchmark")


def run_benchmark(args: argparse.Namespace) -> int:
    return BENCHMARKS[args.benchmark][2](args)


# --------------------------------------------------------------------------- entry points

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "train": ("train a model (see --model)", add_train_arguments, run_train),
    "demo": (
        "generate synthetic leaf data and train BoT-Linear on it (CPU, ~3 min)",
        add_demo_arguments,
        run_demo,
    ),
    "prepare": (
        "metadata.csv + label2id.json from a class-per-folder tree",
        add_prepare_arguments,
        run_prepare,
    ),
    "audit": (
        "find duplicates, leaks across splits, label conflicts and unreadable files",
        add_audit_arguments,
        run_audit,
    ),
    "evaluate": (
        "evaluate a model on a split: accuracy, calibration, unsure coverage, out-of-distribution detection",
        add_evaluate_arguments,
        run_evaluate,
    ),
    "calibrate": (
        "fit the temperature, unsure threshold and out-of-distribution score of a checkpoint (new file)",
        add_calibrate_arguments,
        run_calibrate,
    ),
    "nonleaf": (
        "generate photos that are not leaves (for `evaluate --ood`)",
        add_nonleaf_arguments,
        run_nonleaf,
    ),
    "predict": ("top-k predictions and a verdict for images and folders", add_predict_arguments, run_predict),
    "explain": ("Grad-CAM heat maps over photos", add_explain_arguments, run_explain),
    "export": (
        "export a checkpoint to ONNX, OpenVINO, LiteRT or TorchScript, float or INT8 (each checked)",
        add_export_arguments,
        run_export,
    ),
    "serve": (
        "the diagnosis web app and JSON API, with history and expert review (needs the [serve] extra)",
        add_serve_arguments,
        run_serve,
    ),
    "serve-export": (
        "the expert-reviewed photos of a `serve` history as a dataset (images + metadata.csv + label2id.json)",
        add_serve_export_arguments,
        run_serve_export,
    ),
    "compare": ("table and plots from several metrics JSON files", add_compare_arguments, run_compare),
    "benchmark": (
        "measure speed and memory (see `paddyclf benchmark -h`)",
        add_benchmark_arguments,
        run_benchmark,
    ),
}


def add_subcommands(parser: argparse.ArgumentParser, commands: dict, dest: str) -> None:
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in commands.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddyclf", description="Rice leaf-disease classification.")
    add_subcommands(parser, COMMANDS, "command")
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: COMMANDS[args.command][2](args))


def train_script(model: str, argv: Sequence[str] | None = None) -> None:
    """Entry point of the root ``train_<model>.py`` scripts: ``paddyclf train --model <model>``."""
    parser = argparse.ArgumentParser(description=f"Train {model} (paddyclf).")
    add_train_arguments(parser, model)
    args = parser.parse_args(argv)
    sys.exit(guarded(lambda: run_train(args, model)))


__all__ = ["build_parser", "main", "train_script"]
