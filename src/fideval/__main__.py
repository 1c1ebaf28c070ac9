"""``python -m fideval`` (also what ``torchrun -m fideval`` runs)."""

import sys

from .cli import main

sys.exit(main())
