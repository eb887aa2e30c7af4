"""The one exception the trainer turns into a one-line message and exit code 2."""
from __future__ import annotations

from command_line import UserError


class TrainerError(UserError):
    """A problem with the user's input or setup, not a bug in the trainer."""
