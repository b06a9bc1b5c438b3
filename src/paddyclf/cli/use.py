"""Using a trained model: ``paddyclf evaluate``, ``calibrate``, ``predict``, ``explain`` and ``compare``."""

from __future__ import annotations

import argparse
import sys

from .common import Command


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
    from ..inference.evaluate import format_report, run_evaluation

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


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    from ..trust import DEFAULT_OOD_SCORE, DEFAULT_TARGET_ACCURACY, SCORES

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
    from ..trust import describe_fit
    from ..trust import run_calibrate as calibrate_checkpoint_file

    trust = calibrate_checkpoint_file(
        args.checkpoint, args.metadata, args.output, args.label2id, args.split, args.target_accuracy,
        args.unsure_below, args.ood_score, args.batch_size, args.num_workers, progress=sys.stderr.isatty(),
    )  # fmt: skip
    print(describe_fit(trust))
    print(f"Wrote {args.output}")
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

    from ..inference.predict import predict_files, write_predictions

    rows = predict_files(args.checkpoint, args.paths, args.top_k, args.batch_size, args.backend)
    write_predictions(rows, args.output, args.top_k)
    counts = Counter("error" if r["status"].startswith("error") else r["status"] for r in rows)
    print(f"Wrote {len(rows)} predictions to {args.output} (" + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")")
    return 0


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a <model_name>_best.pt")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photos to explain")
    parser.add_argument("--output-dir", default="explanations", help="output folder (default: explanations)")


def run_explain(args: argparse.Namespace) -> int:
    from ..inference.explain import explain_images

    for path in explain_images(args.checkpoint, args.images, args.output_dir):
        print(f"Wrote {path}")
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        metavar="FILE",
        help="results/<model_name>_metrics.json files; with --test, two model files (checkpoints or exports)",
    )
    parser.add_argument("--output", default="comparison", help="output folder (default: comparison)")
    parser.add_argument(
        "--test",
        metavar="CSV",
        default=None,
        help="run the two models on this metadata's test rows (every row without a split column) and test "
        "the difference with McNemar's exact test",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="batch size with --test (default: 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers with --test (default: 0)")


def run_paired_test(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..inference.paired import compare_on_test

    if len(args.results) != 2:
        raise UserError(f"compare --test takes exactly two model files (got {len(args.results)}).")
    report = compare_on_test(*args.results, args.test, args.output, args.batch_size, args.num_workers)
    test = report["mcnemar"]
    for side in ("a", "b"):
        print(f"{side.upper()}: {report[side]['name']}  accuracy {report[side]['accuracy']:.4f}")
    print(
        f"{report['num_images']} paired photos: only A right {test['only_a_right']}, only B right "
        f"{test['only_b_right']}; McNemar exact p = {test['p_value']:.4g}"
    )
    print(report["verdict"])
    print(f"Wrote {args.output}/paired_test.md, paired_test.json, disagreements.csv")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..inference.compare import compare_results, markdown_table

    if args.test is not None:
        return run_paired_test(args)
    rows = compare_results(args.results, args.output)
    print(markdown_table(rows), end="")
    print(f"Wrote {args.output}/comparison.md, comparison.csv, accuracy_vs_fps.png, size.png")
    return 0


COMMANDS = {
    "evaluate": Command(
        "evaluate a model on a split: accuracy, calibration, unsure coverage, out-of-distribution detection",
        add_evaluate_arguments,
        run_evaluate,
    ),
    "calibrate": Command(
        "fit the temperature, unsure threshold and out-of-distribution score of a checkpoint (new file)",
        add_calibrate_arguments,
        run_calibrate,
    ),
    "predict": Command("top-k predictions and a verdict for images and folders", add_predict_arguments, run_predict),
    "explain": Command("Grad-CAM heat maps over photos", add_explain_arguments, run_explain),
    "compare": Command(
        "table and plots from several metrics JSON files; with --test, a paired test of two models",
        add_compare_arguments,
        run_compare,
    ),
}
