"""Command-line options of the pipeline, with the tutorial's names kept as aliases."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class QuickDrawOptions(PipelineOptions):
    """What to read, how many drawings per class go to each split, where to write."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", "--ndjson_path", dest="input", default=None,
            help="ndjson file, glob or directory on any Beam filesystem (local, gs://), "
                 "plain or .gz; e.g. gs://quickdraw_dataset/full/simplified/*.ndjson. "
                 "Default: the sample bundled in data/sample.")
        parser.add_argument(
            "--output", "--output_path", dest="output", default="out/dataset",
            help="Folder for the TFRecords, class file, stats, rejects and transform_output/.")
        parser.add_argument("--train_observations_per_class", type=int, default=10000,
                            help="Training drawings per class (tutorial default 10000).")
        parser.add_argument("--eval_observations_per_class", type=int, default=1000,
                            help="Eval drawings per class (tutorial default 1000).")
        parser.add_argument("--test_observations_per_class", type=int, default=0,
                            help="Test drawings per class (default 0: no test split).")
        parser.add_argument("--output_shards", type=int, default=10,
                            help="Shards per split (tutorial default 10).")
        parser.add_argument("--recognized_only", action="store_true", default=False,
                            help="Keep only drawings the game recognised (the data notebook's choice).")
        parser.add_argument("--classes", default=None,
                            help="Comma-separated class names, or a file with one name per line. "
                                 "Default: every class found.")
        parser.add_argument("--seed", type=int, default=0,
                            help="Seed of the per-class selection and the shuffle.")
        parser.add_argument("--max_points", type=int, default=10000,
                            help="Reject drawings with more points than this (0: no cap).")
        parser.add_argument("--max_bytes", type=int, default=1_000_000,
                            help="Reject ndjson lines longer than this many bytes (0: no cap).")
        parser.add_argument("--raster", action="store_true", default=False,
                            help="Also store the notebook's 64x64 raster (feature img_64) for CNNs.")
        parser.add_argument("--skip_transform", action="store_true", default=False,
                            help="Skip the tf.Transform analysis (no transform_output/, "
                                 "no ink_length_stats.json).")
