"""Command-line options of the pipeline, with the tutorial's names kept as aliases."""
from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

import command_line

DESCRIPTION = """\
Reads Quick, Draw! ndjson drawings and writes sharded TFRecords in the RNN
tutorial's layout: training/eval/test shards, the classes file, stats.json,
rejects-*.ndjson, the tf.Transform output and manifest.json, written last."""

EPILOG = """\
Beam's options pass through to the runner, e.g. --runner=DataflowRunner
--project=P --region=R --temp_location=gs://B/tmp, --runner=FlinkRunner
--flink_master=HOST:PORT, --direct_num_workers=N (--help_beam lists them all).
An option that neither the pipeline nor Beam knows is an error.

Exit status: 0 the dataset is complete (manifest.json written); 2 a user error
(bad option or value, unwritable folder, absent class, another run writing into
--output), reported in one line on stderr; 1 anything else."""


class QuickDrawOptions(PipelineOptions):
    """What to read, how many drawings per class go to each split, where to write."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", "--ndjson_path", dest="input", default=None, metavar="PATH",
            help="ndjson file, glob or directory on any Beam filesystem (local, gs://), "
                 "plain or .gz; e.g. gs://quickdraw_dataset/full/simplified/*.ndjson. "
                 "Default: the sample bundled in data/sample.")
        parser.add_argument(
            "--output", "--output_path", dest="output", default="out/dataset", metavar="FOLDER",
            help="Folder for the TFRecords, class file, stats, rejects and transform_output/. "
                 "An earlier run's outputs there are removed first.")
        parser.add_argument("--train_observations_per_class", type=int, default=None,
                            metavar="N", help="Training drawings per class (default: the "
                            "tutorial's 10000; 20 when reading the bundled sample).")
        parser.add_argument("--eval_observations_per_class", type=int, default=None,
                            metavar="N", help="Eval drawings per class (default: the tutorial's "
                            "1000; 5 when reading the bundled sample).")
        parser.add_argument("--test_observations_per_class", type=int, default=0,
                            metavar="N", help="Test drawings per class (0: no test split).")
        parser.add_argument("--output_shards", type=int, default=10,
                            metavar="N", help="Shards per split (the tutorial's value).")
        parser.add_argument("--recognized_only", action="store_true", default=False,
                            help="Keep only drawings the game recognised (the data notebook's choice).")
        parser.add_argument("--classes", default=None, metavar="NAMES|FILE",
                            help="Comma-separated class names, or a file with one name per line. "
                                 "A class absent from the input is an error. Default: every class found.")
        parser.add_argument("--seed", type=int, default=0,
                            metavar="N", help="Seed of the per-class selection and the shuffle.")
        parser.add_argument("--max_points", type=int, default=10000,
                            metavar="N", help="Reject drawings with more points than this (0: no cap).")
        parser.add_argument("--max_bytes", type=int, default=1_000_000,
                            metavar="N", help="Reject ndjson lines longer than this many bytes (0: no cap).")
        parser.add_argument("--raster", action="store_true", default=False,
                            help="Also store the notebook's 64x64 raster (feature img_64) for CNNs.")
        parser.add_argument("--skip_transform", action="store_true", default=False,
                            help="Skip the tf.Transform analysis (no transform_output/, "
                                 "no ink_length_stats.json).")


class HelpParser(argparse.ArgumentParser):
    """The pipeline's own options, for --help and for the manifest's record."""

    def dests(self) -> list[str]:
        return [a.dest for a in self._actions if a.option_strings and a.dest not in ("help", "help_beam")]


def help_parser() -> HelpParser:
    parser = HelpParser(prog=command_line.prog("quickdraw-pipeline", "pipeline.run"),
                        description=DESCRIPTION, epilog=EPILOG,
                        formatter_class=command_line.DefaultsFormatter)
    QuickDrawOptions._add_argparse_args(parser)  # pylint: disable=protected-access
    parser.add_argument("--help_beam", action="store_true", help="List Beam's own options and exit.")
    return parser
