"""Apache Beam pipeline: Quick, Draw! ndjson -> shuffled, sharded TFRecords."""

import os

# Before TensorFlow is imported anywhere, the launcher and every worker: its
# C++ INFO and WARNING lines say nothing to a pipeline's user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
