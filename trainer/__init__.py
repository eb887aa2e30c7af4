"""TensorFlow 2 trainer for the conv + bidirectional-LSTM sketch classifier."""

import os

# Before TensorFlow is imported: its C++ INFO lines (CPU instructions, device
# set-up) say nothing to a trainer's user; its warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
