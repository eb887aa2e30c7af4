"""The names the trainer's flags choose from, importable without TensorFlow,
so that the command line's ``--help`` and its errors need no TensorFlow."""

# --cell_type: the recurrent layer of the model (see trainer.model). block_lstm
# was the tutorial's fused LSTMBlockCell: the same LSTM equations in one kernel.
# Keras' LSTM is that fused kernel on a GPU (cuDNN) and on a CPU, so block_lstm
# runs exactly as lstm does.
CELL_TYPES = ("lstm", "block_lstm", "cudnn_lstm")
# --distribution: the tf.distribute strategy (see trainer.distribution).
DISTRIBUTIONS = ("auto", "one_device", "mirrored", "multi_worker")
# --model: rnn, the tutorial's conv1d + BiLSTM over the ink; cnn, a small CNN
# over the drawing rendered as an image (see trainer.model, trainer.raster).
MODEL_FAMILIES = ("rnn", "cnn")
