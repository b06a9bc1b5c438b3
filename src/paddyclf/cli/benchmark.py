"""``paddyclf benchmark``: each measurement of docs/BENCHMARKS.md as a subcommand."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..training.config import TrainConfig
from .common import Command, add_subcommands


def add_benchmark_attention_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmarks.attention import DEFAULT_SIZES

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
    from ..benchmarks.attention import run_attention_benchmark
    from ..training.run import resolve_device

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
    from ..benchmarks.speed import run_speed_benchmark
    from ..fileio import write_json

    if args.batch_size < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--batch-size, --repeats and --threads must be >= 1.")
    result = run_speed_benchmark(args.checkpoint, args.batch_size, args.threads, args.repeats)
    if args.output:
        write_json(args.output, result)
    return 0


def add_benchmark_train_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmarks.train_speed import PIPELINES

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
    parser.add_argument(
        "--whole-run-rounds", type=int, default=2,
        help="whole-run rounds, alternating which process goes first (default: 2)",
    )  # fmt: skip
    parser.add_argument("--output", default=None, help="also write the results to this JSON file")


def run_benchmark_train(args: argparse.Namespace) -> int:
    from ..benchmarks.train_speed import run_train_benchmark
    from ..fileio import write_json
    from ..training.run import resolve_device

    if args.image_size < 32 or min(args.batch_size) < 1 or args.num_workers < 0 or args.generate < 0:
        raise UserError("--image-size must be >= 32, --batch-size >= 1, --num-workers and --generate >= 0.")
    if args.whole_run_rounds < 1:
        raise UserError(f"--whole-run-rounds must be >= 1 (got {args.whole_run_rounds}).")
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
        args.whole_run_rounds,
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
    from ..benchmarks.recipe import VARIANTS

    add_training_benchmark_arguments(parser, 12, "results/recipe_benchmark")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"default: all ({' '.join(VARIANTS)})")


def run_benchmark_recipe(args: argparse.Namespace) -> int:
    from ..benchmarks.recipe import run_recipe_benchmark

    run_recipe_benchmark(training_benchmark_config(args), args.variants, args.seeds, args.output)
    return 0


def add_benchmark_trust_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_benchmark_arguments(parser, 10, "results/trust_benchmark")
    parser.add_argument("--recipe", default="field", help="training recipe (default: field)")
    parser.add_argument("--nonleaf", default=None, help="folder of non-leaf photos (default: `paddyclf nonleaf`'s set)")
    parser.add_argument("--no-open-set", action="store_true", help="skip the held-out-class runs")


def run_benchmark_trust(args: argparse.Namespace) -> int:
    from ..benchmarks.trust import run_trust_benchmark

    base = training_benchmark_config(args, recipe=args.recipe)
    base.validate()
    run_trust_benchmark(base, args.seeds, args.nonleaf, not args.no_open_set, args.output)
    return 0


def add_benchmark_review_queue_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_benchmark_arguments(parser, 10, "results/review_queue_benchmark")
    parser.add_argument("--recipe", default="field", help="training recipe (default: field)")
    parser.add_argument(
        "--random-seeds", type=int, default=10, help="random orders per training seed, the baseline (default: 10)"
    )


def run_benchmark_review_queue(args: argparse.Namespace) -> int:
    from ..benchmarks.review_queue import run_review_queue_benchmark

    if args.train_limit is None or args.train_limit < 1:
        raise UserError(
            "--train-limit is needed (e.g. 150): the model learns from that many train photos and the rest of "
            "the train split is queued as field photos."
        )
    if args.random_seeds < 1:
        raise UserError(f"--random-seeds must be >= 1 (got {args.random_seeds}).")
    base = training_benchmark_config(args, recipe=args.recipe)
    run_review_queue_benchmark(base, args.seeds, args.random_seeds, args.output)
    return 0


def add_benchmark_lifecycle_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_benchmark_arguments(parser, 10, "results/lifecycle_benchmark")
    parser.add_argument("--recipe", default="field", help="training recipe (default: field)")
    parser.add_argument("--review", type=int, default=150, help="queue entries the oracle reviews (default: 150)")
    parser.add_argument("--clients", type=int, default=8, help="clients posting during the swap (default: 8)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before and after the swap")
    parser.add_argument("--work-dir", default=None, help="registry, history and retrain files (default: OUTPUT_work)")


def run_benchmark_lifecycle(args: argparse.Namespace) -> int:
    from ..benchmarks.lifecycle import run_lifecycle_benchmark
    from ..serve.server import require_serve_extra

    require_serve_extra()
    if args.review < 1 or args.clients < 1 or args.settle <= 0:
        raise UserError("--review and --clients must be >= 1 and --settle > 0.")
    config = training_benchmark_config(args, recipe=args.recipe, seed=args.seeds[0])
    run_lifecycle_benchmark(config, args.review, args.clients, args.settle, args.output, args.work_dir)
    return 0


def add_benchmark_browser_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a checkpoint (exported to ONNX, as `serve` does) or an .onnx")
    parser.add_argument("--images", nargs="+", required=True, help="photos or folders: the parity set")
    parser.add_argument("--limit", type=int, default=None, help="use the first N photos (default: all)")
    parser.add_argument(
        "--speed-photo", default=None, help="the photo the speed rounds diagnose (default: the first photo)"
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per speed measurement (default: 30)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2],
        help="WASM threads to time; more than 1 serves the page cross-origin isolated (default: 1 2)",
    )  # fmt: skip
    parser.add_argument(
        "--output", default="results/browser_benchmark", help="prefix of .json/.md (default: results/browser_benchmark)"
    )


def run_benchmark_browser(args: argparse.Namespace) -> int:
    from ..benchmarks.browser import run_browser_benchmark

    if args.repeats < 1 or any(t < 1 for t in args.threads) or (args.limit is not None and args.limit < 1):
        raise UserError("--repeats, --threads and --limit must be >= 1.")
    run_browser_benchmark(
        args.model, args.images, args.limit, args.speed_photo, args.repeats, tuple(args.threads), args.output
    )
    return 0


def add_benchmark_visit_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmarks.visit import DEFAULT_SIZES

    parser.add_argument("--checkpoint", required=True, help="a model file (checkpoint or export)")
    parser.add_argument("--metadata", required=True, help="a metadata.csv with split and group columns (`prepare`)")
    parser.add_argument("--split", default="test", help="the split the visits draw from (default: test)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="photos per visit (default: 1 3 5)"
    )
    parser.add_argument("--visits", type=int, default=1000, help="visits drawn per size (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed (default: 0)")
    parser.add_argument("--num-workers", type=int, default=0, help="decoding processes (default: 0)")
    parser.add_argument(
        "--output", default="results/visit_benchmark", help="prefix of .json/.md (default: results/visit_benchmark)"
    )


def run_benchmark_visit(args: argparse.Namespace) -> int:
    from ..benchmarks.visit import run_visit_benchmark

    run_visit_benchmark(
        args.checkpoint, args.metadata, args.split, args.sizes, args.visits, args.seed, args.output,
        num_workers=args.num_workers,
    )  # fmt: skip
    return 0


def add_benchmark_export_arguments(parser: argparse.ArgumentParser) -> None:
    from ..export import FORMATS

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
    from ..benchmarks.export import run_export_benchmark
    from ..export import FORMATS

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
    parser.add_argument(
        "--output", default=None, help="also write the results to this JSON file (--scaling: OUTPUT.json/.md/.png)"
    )
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="instead: time an uncached audit of N generated sources plus planted copies, for each N",
    )
    parser.add_argument(
        "--scaling-kinds", nargs="+", choices=["lab", "field"], default=["lab", "field"], help="--scaling: photo kinds"
    )
    parser.add_argument(
        "--copy-fraction", type=float, default=0.05, help="--scaling: share of sources with 5 copies (default: 0.05)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def run_benchmark_dedupe(args: argparse.Namespace) -> int:
    from ..benchmarks.dedupe import run_dedupe_benchmark
    from ..fileio import write_json

    if args.scaling is not None:
        return run_benchmark_dedupe_scaling(args)
    if args.lab_photos < 0 or args.copies_of < 0:
        raise UserError("--lab-photos and --copies-of must be >= 0.")
    result = run_dedupe_benchmark(args.images, args.lab_photos, args.copies_of, args.seed)
    if args.output:
        write_json(args.output, result)
    return 0


def run_benchmark_dedupe_scaling(args: argparse.Namespace) -> int:
    from ..benchmarks.dedupe_scaling import run_dedupe_scaling

    if min(args.scaling) < 2 or not 0 < args.copy_fraction <= 1 or (args.workers is not None and args.workers < 1):
        raise UserError("--scaling sizes must be >= 2, --copy-fraction in (0, 1] and --workers >= 1.")
    output = args.output[: -len(".json")] if args.output and args.output.endswith(".json") else args.output
    run_dedupe_scaling(args.scaling, args.scaling_kinds, args.copy_fraction, args.seed, args.workers, output)
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

    from ..benchmarks.serve import run_serve_benchmark
    from ..serve.server import require_serve_extra

    require_serve_extra()
    if args.concurrency < 1 or args.requests < 1 or args.rounds < 1 or not 0 <= args.malformed < 1:
        raise UserError("--concurrency, --requests and --rounds must be >= 1, and --malformed in [0, 1).")
    run_serve_benchmark(
        args.model, args.images, args.concurrency, args.requests, args.rounds, args.malformed,
        shlex.split(args.serve_args), args.output, args.kill_check,
    )  # fmt: skip
    return 0


BENCHMARKS: dict[str, Command] = {
    "attention": Command(
        "softmax vs linear BoT: time, memory, max batch vs image size",
        add_benchmark_attention_arguments,
        run_benchmark_attention,
    ),
    "train": Command(
        "training images/s: project pipeline vs a naive PIL/NCHW one and a plain timm loop",
        add_benchmark_train_arguments,
        run_benchmark_train,
    ),
    "dedupe": Command(
        "duplicate finding: recall on planted copies, false pairs among distinct photos",
        add_benchmark_dedupe_arguments,
        run_benchmark_dedupe,
    ),
    "recipe": Command(
        "fine-tuning recipes: the guide's, each addition alone, the field recipe, over seeds",
        add_benchmark_recipe_arguments,
        run_benchmark_recipe,
    ),
    "export": Command(
        "every export format side by side: size, accuracy, agreement, batch-1 latency, batch-32 throughput",
        add_benchmark_export_arguments,
        run_benchmark_export,
    ),
    "trust": Command(
        "calibration, unsure coverage and out-of-distribution detection (non-leaf photos, held-out classes)",
        add_benchmark_trust_arguments,
        run_benchmark_trust,
    ),
    "review-queue": Command(
        "the review queue: mistake recall at 10% and 20% of the queue, per ordering strategy vs random",
        add_benchmark_review_queue_arguments,
        run_benchmark_review_queue,
    ),
    "lifecycle": Command(
        "the whole loop: champion, field photos served, oracle review of the queue, retrain, gate, swap under load",
        add_benchmark_lifecycle_arguments,
        run_benchmark_lifecycle,
    ),
    "browser": Command(
        "the diagnosis in headless Chromium vs predict and serve (parity), its speed and the first visit's bytes",
        add_benchmark_browser_arguments,
        run_benchmark_browser,
    ),
    "visit": Command(
        "one field, several leaves: answered share and accuracy of visits of 1, 3, 5 photos vs one photo",
        add_benchmark_visit_arguments,
        run_benchmark_visit,
    ),
    "serve": Command(
        "the web app under concurrent load: requests/s and latency vs the bare predictor one photo at a time",
        add_benchmark_serve_arguments,
        run_benchmark_serve,
    ),
    "speed": Command(
        "inference speed of a checkpoint: PyTorch eager, channels_last, ONNX Runtime",
        add_benchmark_speed_arguments,
        run_benchmark_speed,
    ),
}


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, BENCHMARKS, "benchmark")


def run_benchmark(args: argparse.Namespace) -> int:
    return BENCHMARKS[args.benchmark].run(args)


COMMANDS = {
    "benchmark": Command(
        "measure speed and memory (see `paddyclf benchmark -h`)", add_benchmark_arguments, run_benchmark
    ),
}
