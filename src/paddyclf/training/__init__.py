"""Training: from a dataset to a calibrated ``<model_name>_best.pt``.

- :mod:`.config`: :class:`TrainConfig`, the one source of the defaults (the ``train`` flags come from it);
- :mod:`.recipe`: recipes and their pieces (label smoothing, MixUp/CutMix, EMA, warm-up);
- :mod:`.engine`: one training epoch, one evaluation, images per second;
- :mod:`.state`: where a run stands, and ``_last.pt`` for an exact ``--resume``;
- :mod:`.distributed`: the torchrun process group and cross-rank sums;
- :mod:`.run`: :func:`train`, the whole run, top to bottom.
"""

from .config import TrainConfig
from .run import train

__all__ = ["TrainConfig", "train"]
