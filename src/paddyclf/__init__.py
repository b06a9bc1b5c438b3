"""paddyclf: rice leaf-disease classification with lightweight attention CNNs.

The subpackages follow a photo's way (docs/ARCHITECTURE.md): :mod:`.data` -> :mod:`.models` ->
:mod:`.checkpoint` -> :mod:`.trust` -> :mod:`.training` / :mod:`.inference` -> :mod:`.export` ->
:mod:`.serve` -> :mod:`.benchmarks` -> :mod:`.cli`. Importing this package imports none of them.
"""

from ._moved import install as _install_moved_module_aliases

__version__ = "0.1.0"

_install_moved_module_aliases()
