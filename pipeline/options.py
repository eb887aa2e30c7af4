"""The pipeline's command line: its options (the tutorial's names kept as
aliases) and their checks, all before the job starts, each failure one line
naming its flag (``PipelineError``)."""
from __future__ import annotations

import argparse
import os

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.runners import create_runner

import command_line
import local_files
import tfrecord_schema as schema
from pipeline import sources

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


class PipelineError(command_line.UserError):
    """A problem with the options or inputs, reported as one line."""


def quote(value: str, limit: int = 30) -> str:
    """A value for a one-line error: printable, at most ``limit`` characters
    and a count of the rest."""
    text = value if value.isprintable() else ascii(value)[1:-1]
    return text if len(text) <= limit else "%s... (%d characters)" % (text[:limit], len(value))


def quote_names(names: list[str], most: int = 2) -> str:
    """The first few names, quoted, and how many more."""
    shown = ", ".join(quote(n) for n in names[:most])
    return shown + (" and %d more" % (len(names) - most) if len(names) > most else "")


# A file of class names is read whole: 345 names take 4 kB, so this is room to spare.
MAX_CLASSES_FILE_BYTES = 1 << 20


def read_classes(value: str | None) -> list[str] | None:
    """``--classes``: a comma-separated list, or a file with one name per line."""
    if not value:
        return None
    if FileSystems.exists(value) and not value.endswith("/"):
        try:
            # a local FIFO would block the open and /dev/zero never end: regular files only
            opened = local_files.open_regular(value) if sources.is_local(value) \
                else FileSystems.open(value)
            with opened as f:
                data = f.read(MAX_CLASSES_FILE_BYTES + 1)
            if len(data) > MAX_CLASSES_FILE_BYTES:
                raise ValueError("more than %d bytes" % MAX_CLASSES_FILE_BYTES)
            names = schema.parse_classes(data)
        except (OSError, ValueError) as e:
            raise PipelineError("--classes=%s cannot be read as a file of class names: %s" % (
                quote(value, 200), " ".join(str(e).split())[:200])) from None
    else:
        names = [n.strip() for n in value.split(",")]
    names = [n for n in names if n]
    if not names:
        raise PipelineError("--classes=%s names no class" % quote(value))
    return names


def check_argv(argv: list[str]) -> list[str]:
    """Refuses an option that neither this pipeline nor Beam knows (Beam would
    drop it with a warning and run with the default), naming the closest one.
    Beam's options are those of every PipelineOptions subclass, as Beam parses them."""
    if "-h" in argv or "--help" in argv:
        print(help_parser().format_help())
        raise SystemExit(0)
    parser = beam_parser()
    if "--help_beam" in argv:
        parser.prog = command_line.prog("quickdraw-pipeline", "pipeline.run")
        print(parser.format_help())
        raise SystemExit(0)
    try:
        _, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:  # a bad value
        raise PipelineError(str(e)) from None
    flags = [a for a in unknown if a.startswith("-")]
    if flags:
        name = flags[0].split("=", 1)[0]
        known = [o for action in parser._actions for o in action.option_strings]  # pylint: disable=protected-access
        raise PipelineError(command_line.unknown_option(name, known))
    if unknown:
        raise PipelineError("unexpected argument %r: options are --name=value (see --help)" % unknown[0])
    return argv


def beam_parser() -> argparse.ArgumentParser:
    """Every option Beam and this pipeline know: the parser Beam builds from the
    PipelineOptions subclasses, as ``get_all_options`` hands it to its
    ``add_extra_args_fn``. A bad value raises ``argparse.ArgumentError``."""
    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    [parser] = parsers
    parser.exit_on_error = False
    for action in parser._actions:  # pylint: disable=protected-access
        if action.dest == "help":
            action.help = "show the pipeline's own options and exit (--help_beam: Beam's)"
    return parser


# Drawings per class in train and eval when not given: the tutorial's for real
# data; for the bundled sample (25 a class), what it holds, so that the run
# with no flags gives a dataset the trainer can use.
TUTORIAL_COUNTS = {"train_observations_per_class": 10000, "eval_observations_per_class": 1000}
SAMPLE_COUNTS = {"train_observations_per_class": 20, "eval_observations_per_class": 5}


def default_counts(opts: QuickDrawOptions) -> None:
    counts = SAMPLE_COUNTS if opts.input is None else TUTORIAL_COUNTS
    for name, value in counts.items():
        if getattr(opts, name) is None:
            setattr(opts, name, value)


# The numeric options' ranges: beyond them a value is a typo, not a dataset.
BOUNDS = {"train_observations_per_class": (0, 10 ** 8), "eval_observations_per_class": (0, 10 ** 8),
          "test_observations_per_class": (0, 10 ** 8), "output_shards": (1, 10_000),
          "max_points": (0, 10 ** 8), "max_bytes": (0, 1 << 30)}
_WHY_BOUND = {
    "train_observations_per_class": "the whole dataset holds 50M drawings",
    "eval_observations_per_class": "the whole dataset holds 50M drawings",
    "test_observations_per_class": "the whole dataset holds 50M drawings",
    "output_shards": "5,000 drawings a shard for the whole dataset; each shard is a file",
    "max_points": "0: no cap",
    "max_bytes": "a line is held in memory up to this size; 0: no cap",
}
WORKERS_PER_CORE = 4


def check_values(opts: QuickDrawOptions) -> None:
    """Values out of range, named by their flag."""
    if not opts.output or not opts.output.strip():
        raise PipelineError("--output is empty: name the dataset's folder")
    if not -2 ** 63 <= opts.seed < 2 ** 63:
        raise PipelineError("--seed=%d: must be a 64-bit integer" % opts.seed)
    for name, (low, high) in BOUNDS.items():
        value = getattr(opts, name)
        if value < low:
            raise PipelineError("--%s=%d: must be at least %d" % (name, value, low))
        if value > high:
            raise PipelineError("--%s=%d: must be at most %d (%s)" % (name, value, high, _WHY_BOUND[name]))


def check_runner(options: PipelineOptions) -> None:
    """Beam's own options that would otherwise fail inside the job with a traceback."""
    runner = options.view_as(StandardOptions).runner
    if runner:
        try:
            chosen = create_runner(runner)
        except (ValueError, ImportError, AttributeError):
            raise PipelineError("--runner=%s: not a Beam runner (e.g. DirectRunner, DataflowRunner, "
                                "FlinkRunner; see --help_beam)" % runner) from None
        # What beam.Pipeline checks, before the output folder is locked and cleared.
        errors = PipelineOptionsValidator(options, chosen).validate()
        if errors:
            raise PipelineError("--runner=%s: %s" % (runner, " ".join(errors[0].split())))
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers is not None and workers < 0:
        raise PipelineError("--direct_num_workers=%d: must be at least 0 (0: one per core)" % workers)
    most = WORKERS_PER_CORE * (os.cpu_count() or 1)
    if workers is not None and workers > most:
        raise PipelineError("--direct_num_workers=%d: must be at most %d on this machine (%d per core; "
                            "each is a process)" % (workers, most, WORKERS_PER_CORE))
