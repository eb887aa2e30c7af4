"""Running the pipeline and trainer for real, and retraining on a schedule."""
