"""TensorFlow 2 trainer for the conv + bidirectional-LSTM sketch classifier."""
