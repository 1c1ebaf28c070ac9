"""``python -m fideval`` (also what ``torchrun -m fideval`` runs)."""

from .cli import console_main

console_main()
