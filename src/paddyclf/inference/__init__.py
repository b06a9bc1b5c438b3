"""Using a trained model: the predictor every tool runs, and the tools.

- :mod:`.predictor`: :class:`Predictor` and its :class:`Diagnosis` (probabilities, OOD score, verdict);
- :mod:`.runtimes`: exported files on ONNX Runtime, OpenVINO, LiteRT and TorchScript;
- :mod:`.loading`: :func:`load_predictor`, a predictor for any model file;
- :mod:`.predict`, :mod:`.evaluate`, :mod:`.explain`, :mod:`.compare`: the ``paddyclf`` commands of the same names.
"""

from .loading import load_predictor, torch_predictor
from .predictor import Diagnosis, Predictor
from .runtimes import ONNX_METADATA_KEY

__all__ = ["ONNX_METADATA_KEY", "Diagnosis", "Predictor", "load_predictor", "torch_predictor"]
