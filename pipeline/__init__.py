"""Apache Beam pipeline: Quick, Draw! ndjson -> shuffled, sharded TFRecords."""
