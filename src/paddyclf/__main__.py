"""``python -m paddyclf`` (also what ``torchrun -m paddyclf`` runs)."""

import sys

from .cli import main

sys.exit(main())
