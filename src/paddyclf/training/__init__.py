"""Training: from a dataset to a calibrated ``<model_name>_best.pt``.

- :mod:`.config`: :class:`TrainConfig`, the one source of the defaults (the ``train`` flags come from it);
- :mod:`.recipe`: recipes and their pieces (label smoothing, MixUp/CutMix, EMA, warm-up);
- :mod:`.engine`: one training epoch, one evaluation, images per second;
- :mod:`.state`: where a run stands, and ``_last.pt`` for an exact ``--resume``;
- :mod:`.distributed`: the torchrun process group and cross-rank sums;
- :mod:`.run`: :func:`train`, the whole run, top to bottom.

``from paddyclf.training import TrainConfig, train`` works; :func:`train` is imported on first use, so
that reading the config (``paddyclf train --help``) does not import scikit-learn and the engine.
"""

from .config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "train":
        from .run import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
