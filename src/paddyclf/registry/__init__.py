"""The model registry: MLflow's, with paddyclf's lineage, a promotion gate and a recorded champion.

- :mod:`.store`: the registry at a folder or an MLflow URI, its versions and their files;
- :mod:`.lineage`: what a version saw and where it comes from (tags, ``lineage/photos.csv``);
- :mod:`.register`: ``registry add``, a checkpoint as the next version;
- :mod:`.gate`: champion and candidate on the same test photos, MLflow's threshold validation;
- :mod:`.promotion`: ``promote`` and ``rollback``, each an event, safe against a crash.
"""

from .gate import DEFAULT_MAX_DROP, DEFAULT_MAX_FIELD_DROP, GateDecision, run_gate
from .promotion import Event, GateRefusedError, PromotionRequest, events, promote, rollback
from .register import NewVersion, register_checkpoint
from .store import CHAMPION, ModelRegistry, Version

__all__ = [
    "CHAMPION",
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_FIELD_DROP",
    "Event",
    "GateDecision",
    "GateRefusedError",
    "ModelRegistry",
    "NewVersion",
    "PromotionRequest",
    "Version",
    "events",
    "promote",
    "register_checkpoint",
    "rollback",
    "run_gate",
]
