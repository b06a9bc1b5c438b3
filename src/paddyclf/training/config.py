"""Training configuration: the one source of truth for defaults. The CLI is generated from it."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..models import DEFAULT_BACKBONE, list_models
from ..options import derived_option, option
from ..trust import DEFAULT_OOD_SCORE, DEFAULT_TARGET_ACCURACY, SCORES, trust_option_problems
from .recipe import AUGMENTS, RECIPES, describe, recipe_values


def per_recipe_defaults(name: str) -> str:
    """``--help``'s default of a recipe field: its value in each recipe."""
    return "from --recipe: " + ", ".join(f"{recipe} {recipe_values(recipe)[name]}" for recipe in RECIPES)


def recipe_option(help: str, **extra):  # noqa: A002
    """A field whose default comes from ``--recipe`` (None until :meth:`TrainConfig.__post_init__`)."""
    return derived_option(help, per_recipe_defaults, **extra)


@dataclass
class TrainConfig:
    """Everything a training run needs; ``paddyclf train --help`` lists the same fields as flags."""

    model: str = option("MobileNetV3_Small_BoT_Linear", "architecture", choices=list_models())
    metadata: str = option("data/metadata.csv", "metadata CSV with columns path,label[,split]")
    label2id: str = option("data/label2id.json", "JSON mapping label name -> class id")
    image_size: int = option(224, "input size in pixels (square)")
    heads: int = option(4, "attention heads (must divide the attention width, 144 for MobileNetV3-Small)")
    dropout: float = option(0.1, "dropout before the classifier, in [0, 1)")
    reduction: int = option(32, "coordinate-attention channel reduction (Hybrid only)")
    pretrained: bool = option(False, "start the backbone from timm's ImageNet weights (downloads them)")
    pretrained_weights: str | None = option(
        None, "load the ImageNet backbone from a local timm .safetensors/.pth instead of downloading"
    )
    init_from: str | None = option(
        None,
        "start from the weights of this <model>_best.pt (fine-tuning, as `retrain` does): the same architecture, "
        "size and classes; --base-lr and --head-lr apply as usual",
    )
    backbone: str = option(DEFAULT_BACKBONE, "timm feature extractor, e.g. tf_mobilenetv3_small_100")
    epochs: int = option(30, "number of epochs")
    batch_size: int = option(32, "batch size (per process under torchrun)")
    patience: int = option(10, "early-stopping patience in epochs on valid macro-F1; <= 0 disables")
    base_lr: float | None = recipe_option("learning rate of the pretrained backbone")
    head_lr: float | None = recipe_option("learning rate of everything new (attention blocks, classifier)")
    weight_decay: float = option(1e-2, "AdamW weight decay (not applied to norms, biases, position tables)")
    scheduler_tmax: int | None = option(None, "T_max of CosineAnnealingLR in epochs (default: --epochs)")
    grad_clip: float = option(1.0, "clip the gradient norm to this value; <= 0 disables")
    recipe: str = option(
        "guide",
        "fine-tuning recipe: guide (the founding guide's) or field (measured best on few real photos: "
        + describe("field")
        + "); explicit flags override it",
        choices=tuple(RECIPES),
    )
    label_smoothing: float | None = recipe_option("label smoothing of the cross-entropy, in [0, 1)")
    ema_decay: float | None = recipe_option(
        "keep an EMA of the weights (timm ModelEmaV3, warm-up) with this decay; it validates and is saved; 0 = off"
    )
    mixup: float | None = recipe_option("MixUp alpha (torchvision v2); 0 = off")
    cutmix: float | None = recipe_option("CutMix alpha (torchvision v2); with --mixup one of them per batch; 0 = off")
    augment: str | None = recipe_option("extra train augmentation (torchvision v2)", choices=AUGMENTS)
    random_erasing: float | None = recipe_option("probability of random erasing per training image")
    warmup_epochs: int | None = recipe_option("epochs of linear learning-rate warm-up before the cosine schedule")
    calibrate: bool = option(
        True,
        "after training, fit the temperature (valid NLL), the unsure threshold and the out-of-distribution "
        "score (train features, valid threshold) and store them in the best checkpoint",
    )
    target_accuracy: float = option(
        DEFAULT_TARGET_ACCURACY,
        "the unsure threshold is the lowest that keeps this accuracy on the valid images it answers",
    )
    unsure_below: float | None = option(
        None, "fixed unsure threshold on the calibrated top probability (default: chosen by --target-accuracy)"
    )
    ood_score: str = option(DEFAULT_OOD_SCORE, "out-of-distribution score", choices=tuple(SCORES))
    num_workers: int = option(4, "DataLoader worker processes (0 loads in the main process)")
    pin_memory: bool = option(False, "pin host memory in the DataLoader (CUDA)")
    train_limit: int | None = option(None, "use a deterministic stratified subset of this many training samples")
    valid_limit: int | None = option(None, "use a deterministic stratified subset of this many validation samples")
    model_name: str | None = option(None, "name of the checkpoint and result files (default: the architecture)")
    device: str = option("auto", "cpu, cuda, cuda:N or auto")
    seed: int = option(42, "random seed (same seed on CPU -> same history)")
    plot: bool = option(False, "save the training-history figure to results/<model_name>_history.png")
    save_history: bool = option(False, "write results/<model_name>_history.json and _metrics.json")
    output_dir: str = option(".", "where the checkpoint goes; results go to <output-dir>/results/")
    channels_last: bool = option(
        True, "channels_last memory format for model and batches (faster convs on CPU and GPU)"
    )
    compile: bool = option(False, "torch.compile the model (slow first epoch, faster afterwards)")
    compile_backend: str = option(
        "inductor", "torch.compile backend with --compile (aot_eager: trace only, no codegen)"
    )
    cache_dir: str | None = option(
        None, "cache decoded, resized images here (uint8, memory-mapped); later epochs skip JPEG decoding"
    )
    resume: str | None = option(None, "continue from a <model_name>_last.pt written by an interrupted run")
    sync_bn: bool = option(False, "SyncBatchNorm across processes under torchrun")
    tensorboard: str | None = option(
        None, "log each epoch, the hparams with the final metrics and the confusion matrix to DIR/<model_name>"
    )
    mlflow: str | None = option(
        None,
        "log params, per-epoch metrics and the checkpoint and result files to MLflow: a tracking URI, or a folder "
        "(a local store: DIR/mlflow.db and DIR/artifacts)",
    )
    mlflow_experiment: str = option("paddyclf", "the MLflow experiment of the run (with --mlflow)")
    track_group: str | None = option(
        None, "a name shared by related runs (cv sets it): TensorBoard's subfolder, MLflow's paddyclf.group tag"
    )

    def __post_init__(self) -> None:
        for name, value in recipe_values(self.recipe).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def run_name(self) -> str:
        return self.model_name or self.model

    def validate(self) -> None:
        """Raise :class:`UserError` listing every invalid value at once."""
        problems = []
        if self.model not in list_models():
            problems.append(f"--model must be one of {', '.join(list_models())} (got {self.model!r})")
        if self.epochs < 1:
            problems.append(f"--epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be >= 1 (got {self.batch_size})")
        for flag, lr in (("--base-lr", self.base_lr), ("--head-lr", self.head_lr)):
            if not lr > 0:
                problems.append(f"{flag} must be > 0 (got {lr})")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must be >= 0 (got {self.weight_decay})")
        if not 0 <= self.dropout < 1:
            problems.append(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.image_size < 32:
            problems.append(f"--image-size must be >= 32 (got {self.image_size})")
        if self.num_workers < 0:
            problems.append(f"--num-workers must be >= 0 (got {self.num_workers})")
        if self.scheduler_tmax is not None and self.scheduler_tmax < 1:
            problems.append(f"--scheduler-tmax must be >= 1 (got {self.scheduler_tmax})")
        if self.reduction < 1:
            problems.append(f"--reduction must be >= 1 (got {self.reduction})")
        for flag, limit in (("--train-limit", self.train_limit), ("--valid-limit", self.valid_limit)):
            if limit is not None and limit < 1:
                problems.append(f"{flag} must be >= 1 (got {limit})")
        if self.heads < 1:
            problems.append(f"--heads must be >= 1 (got {self.heads})")
        problems += self._recipe_problems()
        problems += trust_option_problems(self.target_accuracy, self.unsure_below, self.ood_score)
        if problems:
            raise UserError("Invalid options: " + "; ".join(problems) + ".")

    def _recipe_problems(self) -> list[str]:
        problems = []
        if self.recipe not in RECIPES:
            problems.append(f"--recipe must be one of {', '.join(RECIPES)} (got {self.recipe!r})")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"--ema-decay must be in [0, 1) (got {self.ema_decay})")
        for flag, alpha in (("--mixup", self.mixup), ("--cutmix", self.cutmix)):
            if alpha < 0:
                problems.append(f"{flag} must be >= 0 (got {alpha})")
        if self.augment not in AUGMENTS:
            problems.append(f"--augment must be one of {', '.join(AUGMENTS)} (got {self.augment!r})")
        if not 0 <= self.random_erasing <= 1:
            problems.append(f"--random-erasing must be in [0, 1] (got {self.random_erasing})")
        if self.warmup_epochs < 0:
            problems.append(f"--warmup-epochs must be >= 0 (got {self.warmup_epochs})")
        return problems
