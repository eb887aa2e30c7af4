"""Where the test data lies: the demo's sample and the larger real sample, both in the repo."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED_SAMPLE = REPO / "data" / "sample"
# 8,600 real drawings (344 classes x 25); data/real_sample/README.md has their source and licence.
REAL_SAMPLE = REPO / "data" / "real_sample"
SHARED_SAMPLE = REAL_SAMPLE
