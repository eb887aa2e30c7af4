"""Inputs named like ndjson files that are not regular files."""
from __future__ import annotations

import os
from pathlib import Path

# name -> (the pipeline's damage reason, what the status says it is)
SPECIAL_FILES = {
    "pipe.ndjson": ("not_a_regular_file", "a FIFO"),          # open() waits for a writer
    "zero.ndjson": ("not_a_regular_file", "a character device"),    # /dev/zero never ends
    "random.ndjson": ("not_a_regular_file", "a character device"),  # nor does /dev/urandom
    "folder.ndjson": ("is_a_directory", "a directory"),
}


def make_special_files(folder: Path) -> None:
    """Puts every one of SPECIAL_FILES into ``folder``."""
    os.mkfifo(folder / "pipe.ndjson")
    os.symlink("/dev/zero", folder / "zero.ndjson")
    os.symlink("/dev/urandom", folder / "random.ndjson")
    (folder / "folder.ndjson").mkdir()
