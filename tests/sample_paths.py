"""Where the test data lies: the sample bundled in the repo and the real drawings beside it."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED_SAMPLE = REPO / "data" / "sample"
# 8,600 real drawings (344 classes x 25), outside the repo; tests that need them skip without.
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "quickdraw_simplified_sample"
