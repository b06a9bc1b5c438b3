"""``paddyclf export``: a checkpoint to ONNX, OpenVINO, LiteRT or TorchScript, float or INT8, each checked."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .common import Command


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from ..export import DEFAULT_OPSET, FORMATS, ExportOptions

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
    parser.add_argument(
        "--search-evaluations",
        type=int,
        default=defaults.search_evaluations,
        help="INT8: when the plain recipe fails the gate, search for the most-INT8 model within "
        "--max-accuracy-drop in at most this many passes over the validation photos, keeping the most "
        f"sensitive layers out of INT8; 0: no search (default: {defaults.search_evaluations})",
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for INT8 photos (default: 0)")


def run_export(args: argparse.Namespace) -> int:
    from ..export import ExportOptions, export_model

    if args.calibration_images < 1 or args.max_accuracy_drop < 0 or args.search_evaluations < 0:
        raise UserError("--calibration-images must be >= 1, --max-accuracy-drop >= 0 and --search-evaluations >= 0.")
    options = ExportOptions(
        opset=args.opset,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        validate=args.validate,
        max_accuracy_drop=args.max_accuracy_drop,
        search_evaluations=args.search_evaluations,
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
            f"verdict agreement {check['verdict_agreement']:.1%}; {int8_summary(check['int8'])}"
        )
    print(f"Wrote {', '.join(report['files'])} ({report['size_bytes'] / 1e6:.2f} MB); {detail}")
    return 0


def int8_summary(record: dict) -> str:
    """The INT8 file's size against the float ONNX, and what the accuracy-aware search did (if it ran)."""
    size = f"{record['size_vs_float_onnx']:.2f}x the float ONNX's {record['float_onnx_bytes'] / 1e6:.2f} MB"
    if not record["searched"]:
        return f"plain recipe, {size}"
    kept = record["kept_layers"]
    listed = "".join(f"\n  {name}" for name in kept)
    return (
        f"the plain recipe was {record['plain_recipe_drop_points']:.2f} points below float; the accuracy-aware "
        f"search ({record['method']}, {record['evaluations']} evaluation(s), {record['seconds']:.0f} s) kept "
        f"{len(kept)} of {record['layers_total']} layers {record['kept_as']}; {size}{listed}"
    )


COMMANDS = {
    "export": Command(
        "export a checkpoint to ONNX, OpenVINO, LiteRT or TorchScript, float or INT8 (each checked)",
        add_export_arguments,
        run_export,
    ),
}
