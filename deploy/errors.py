"""The two ways a retraining step ends without a new model in service."""
from __future__ import annotations


class RetrainError(Exception):
    """A step cannot run or did not produce what the next step needs."""


class Refused(Exception):
    """The gate refused the candidate; ``str()`` says why, in one line."""
