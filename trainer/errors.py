"""The one exception the trainer turns into a one-line message and exit code 2."""
from __future__ import annotations


class TrainerError(Exception):
    """A problem with the user's input or setup, not a bug in the trainer."""
