"""Where the test data lies: the sample bundled in the repo and the real drawings beside it."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED_SAMPLE = REPO / "data" / "sample"
# 8,600 real drawings (344 classes x 25), outside the repo; tests that need them skip without.
# QUICKDRAW_SHARED_SAMPLE points elsewhere (a git worktree's parent is not the checkout's).
SHARED_SAMPLE = Path(os.environ.get("QUICKDRAW_SHARED_SAMPLE",
                                    REPO.parent / "shared" / "data" / "quickdraw_simplified_sample"))
