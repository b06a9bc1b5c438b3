"""``python -m paddyclf`` (also what ``torchrun -m paddyclf`` runs)."""

from .cli import entry

entry()
