"""From the experts' reviews back to a better model: ``paddyclf retrain``.

- :mod:`.field_split`: which reviewed photos train, which only judge (the field test split), which are
  excluded as copies of base valid or test photos;
- :mod:`.retrain`: the audit, the candidate's training, its paired evaluation beside the champion, and
  its registration;
- :mod:`.report`: ``retrain.md``, ``retrain.json``, ``retrain.png`` and the photos whose answer changed.
"""

from .field_split import EXCLUDED, FIELD_TEST, TRAIN, assign_roles
from .retrain import RetrainConfig, run_retrain

__all__ = ["EXCLUDED", "FIELD_TEST", "TRAIN", "RetrainConfig", "assign_roles", "run_retrain"]
