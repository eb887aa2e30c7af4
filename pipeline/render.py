"""``quickdraw-render``: a PNG mosaic of drawings captioned with their class.

The data notebook's way of looking at the data, for both ends of the pipeline:
the ndjson it reads (plain or gzipped, simplified or raw format) and the
TFRecords it writes, whose ``ink`` deltas are turned back into strokes. A look
at the output is the quickest check that a run produced sensible drawings.

    python -m pipeline.render --input 'data/sample/*.ndjson' --output sample.png
    python -m pipeline.render --input 'out/training.tfrecord-*' --rows 4 --cols 8

TensorFlow is imported only to read TFRecords, so rendering ndjson works
without it.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import gzip
import os
import random
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import command_line
import tfrecord_schema as schema
from native_logs import NATIVE_NOISE
from ndjson_format import Limits, Reject, check_line, file_class
from pipeline import local_files

Stroke = tuple[np.ndarray, np.ndarray]

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz", ".json")
SUPERSAMPLE = 4       # strokes are drawn this much larger, then box-filtered
MIN_CELL = 32
NOT_RECOGNIZED = "not_recognized"  # skipped by --recognized_only, not a bad line
DAMAGED_FILE = "damaged_file"  # a file read up to a cut or corruption, or unreadable
MAX_PIXELS = 1 << 27  # the largest mosaic: 128 MB of grayscale, about 11,585 pixels square


class RenderError(command_line.UserError):
    """Input that leaves nothing to draw; reported in one line, exit code 2."""


@dataclass
class Drawing:
    word: str
    strokes: list[Stroke]


@dataclass
class Candidate:
    """One readable record that passed the filters; strokes are built lazily
    because most candidates are not picked."""
    word: str
    make_strokes: Callable[[], list[Stroke]]

    def to_drawing(self) -> Drawing:
        return Drawing(self.word, self.make_strokes())


# --- Input files -------------------------------------------------------------

def resolve_inputs(pattern: str) -> list[Path]:
    """The files ``pattern`` names: a file, a glob, or a directory (its ndjson
    files, else its TFRecord shards). A path the system refuses to look up
    (a name too long) is a ``RenderError``: ``Path.is_dir`` raises on it."""
    path = Path(pattern)
    try:
        is_dir = path.is_dir()
    except OSError as e:
        raise RenderError("--input %s: %s" % (command_line.one_line(pattern, 100),
                                              e.strerror or e)) from None
    if is_dir:
        # A pipeline's output folder is drawn from its shards: its rejects
        # files are ndjson too, but of rejected lines, not drawings.
        dataset = any((path / name).exists() for name in (schema.MANIFEST_FILE, schema.STATS_FILE))
        files = [] if dataset else [p for p in sorted(path.iterdir())
                                    if p.name.endswith(NDJSON_SUFFIXES)]
        if not files:
            files = [Path(p) for split in schema.SPLITS for p in
                     sorted(glob.glob(str(path / schema.shard_pattern(split))))]
    else:
        # Everything matched but folders not named like input files: a FIFO,
        # a device or a dangling link is reported when it is read.
        files = [Path(p) for p in sorted(glob.glob(pattern))
                 if not os.path.isdir(p) or p.endswith(NDJSON_SUFFIXES)]
    return [f for f in files if f.name != schema.CLASSES_FILE]


def is_ndjson(path: Path) -> bool:
    """By name, else by content: ndjson starts with ``{``, a TFRecord with a
    little-endian 64-bit length, whose high bytes are zero."""
    if path.name.endswith(NDJSON_SUFFIXES):
        return True
    try:
        with _open_binary(path) as f:
            head = f.read(64).lstrip()
    except (OSError, EOFError):
        return False
    return head.startswith(b"{") and b"\x00" not in head


@contextlib.contextmanager
def _open_binary(path: Path):
    """A regular file's bytes, decompressed when it is gzip (by content)."""
    with local_files.open_regular(str(path)) as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield f


def _regular(path: Path, rejects: collections.Counter) -> bool:
    """True for a regular file. Anything else (a FIFO, a device, a directory,
    a link to nothing) is a ``damaged_file``, found before any open that
    could block, and named on stderr."""
    try:
        local_files.check_regular(str(path))
    except OSError as e:
        _damaged(path, rejects, e)
        return False
    return True


def _damaged(path: Path, rejects: collections.Counter, error: Exception) -> None:
    rejects[DAMAGED_FILE] += 1
    if isinstance(error, local_files.NotARegularFile):
        print("quickdraw-render: warning: %s is not read: it is %s, not a regular file" % (path, error.kind),
              file=sys.stderr)
    else:
        print("quickdraw-render: warning: %s is damaged, read up to the damage: %s" % (path, error),
              file=sys.stderr)


# --- ndjson ------------------------------------------------------------------

def points_to_strokes(points: np.ndarray) -> list[Stroke]:
    """Strokes from validated points (x, y, 1.0 on the last point of a stroke)."""
    ends = np.flatnonzero(points[:, 2]) + 1
    xy = points[:, :2].astype(np.float64)
    return [(s[:, 0], s[:, 1]) for s in np.split(xy, ends[:-1])]


def read_ndjson(path: Path, rejects: collections.Counter, recognized_only: bool,
                limits: Limits = Limits()) -> Iterator[Candidate]:
    """The drawings of one ndjson file, validated as the pipeline does
    (``ndjson_format``); other lines are counted in ``rejects`` by reason,
    blank lines skipped. A damaged file (a cut or corrupt gzip stream, a read
    error) is counted as ``damaged_file`` and named on stderr; as in the
    pipeline, the complete lines before the damage are used."""
    expected_word = file_class(str(path))
    try:
        with _open_binary(path) as f:
            for line in local_files.bounded_lines(f, limits.max_bytes):
                if not line.strip():
                    continue
                drawing = check_line(line, limits, expected_word)
                if isinstance(drawing, Reject):
                    rejects[drawing.reason] += 1
                    continue
                if recognized_only and not drawing.recognized:
                    rejects[NOT_RECOGNIZED] += 1
                    continue
                yield Candidate(drawing.word, lambda p=drawing.points: points_to_strokes(p))
    except (OSError, EOFError, zlib.error) as e:
        _damaged(path, rejects, e)


# --- TFRecords ---------------------------------------------------------------

def ink_to_strokes(ink: np.ndarray) -> list[Stroke]:
    """Strokes from the pipeline's ``ink`` rows (dx, dy, end_of_stroke).

    Row ``i`` holds point ``i + 1`` relative to point ``i``; point 0 was dropped
    by ``parse_line``, so it is placed at (0, 0) and the drawing is exact up
    to that translation. A row with end_of_stroke = 1 ends its stroke.
    """
    ink = np.asarray(ink, dtype=np.float64).reshape(-1, schema.INK_CHANNELS)
    points = np.zeros((len(ink) + 1, 2))
    np.cumsum(ink[:, :2], axis=0, out=points[1:])
    ends = np.flatnonzero(ink[:, 2] > 0.5) + 2  # exclusive end, in points
    bounds = [0] + [int(e) for e in ends if e < len(points)] + [len(points)]
    return [(points[a:b, 0], points[a:b, 1])
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _read_classes(records_dir: Path) -> list[str] | None:
    path = records_dir / schema.CLASSES_FILE
    if not path.is_file():
        return None
    try:
        return schema.parse_classes(path.read_bytes())
    except (OSError, ValueError) as e:
        raise RenderError("classes file %s: %s" % (path, e)) from None


def _ink_from_example(feature) -> np.ndarray:
    values = np.asarray(feature[schema.INK].float_list.value, dtype=np.float32)
    if schema.SHAPE in feature:
        shape = tuple(feature[schema.SHAPE].int64_list.value)
        if len(shape) != 2 or shape[1] != schema.INK_CHANNELS \
                or shape[0] * shape[1] != values.size:
            raise ValueError("shape does not match ink")
    if values.size == 0 or values.size % schema.INK_CHANNELS:
        raise ValueError("ink is empty or not a multiple of 3")
    return values.reshape(-1, schema.INK_CHANNELS)


def read_tfrecords(path: Path, rejects: collections.Counter,
                   recognized_only: bool) -> Iterator[Candidate]:
    """The drawings of one TFRecord file of ``tf.train.Example``; the class is
    ``word``, else ``class_index`` in the classes file beside the records."""
    import tensorflow as tf  # only TFRecord input needs it

    classes = _read_classes(path.parent)
    compression = "GZIP" if path.name.endswith(".gz") else ""
    try:
        for serialized in tf.data.TFRecordDataset(
                str(path), compression_type=compression).as_numpy_iterator():
            try:
                feature = tf.train.Example.FromString(serialized).features.feature
            except Exception:  # protobuf's DecodeError has no stable import path
                rejects["not a tf.train.Example"] += 1
                continue
            if schema.INK not in feature:
                rejects["no ink feature"] += 1
                continue
            if recognized_only and (
                    schema.RECOGNIZED not in feature
                    or list(feature[schema.RECOGNIZED].int64_list.value) != [1]):
                rejects[NOT_RECOGNIZED] += 1
                continue
            word = _word_of(feature, classes)
            if word is None:
                rejects["no word, and class_index not in %s" % schema.CLASSES_FILE] += 1
                continue
            try:
                ink = _ink_from_example(feature)
            except ValueError as e:
                rejects[str(e)] += 1
                continue
            yield Candidate(word, lambda ink=ink: ink_to_strokes(ink))
    except tf.errors.OpError as e:
        raise RenderError("cannot read %s as TFRecords: %s"
                          % (path, e.message.splitlines()[0])) from None


def _word_of(feature, classes: list[str] | None) -> str | None:
    if schema.WORD in feature and feature[schema.WORD].bytes_list.value:
        return feature[schema.WORD].bytes_list.value[0].decode("utf-8", "replace")
    if schema.CLASS_INDEX in feature and classes is not None:
        index = list(feature[schema.CLASS_INDEX].int64_list.value)
        if len(index) == 1 and 0 <= index[0] < len(classes):
            return classes[index[0]]
    return None


# --- Selection ---------------------------------------------------------------

def pick(candidates: Iterable[Candidate], count: int, seed: int,
         classes: set[str] | None = None) -> tuple[list[Drawing], int]:
    """``count`` candidates drawn uniformly at random in one pass (reservoir
    sampling), so the input may be larger than memory; returns them shuffled
    and the number of candidates seen."""
    rng = random.Random(seed)
    chosen: list[Candidate] = []
    seen = 0
    for candidate in candidates:
        if classes is not None and candidate.word not in classes:
            continue
        if seen < count:
            chosen.append(candidate)
        else:
            slot = rng.randrange(seen + 1)
            if slot < count:
                chosen[slot] = candidate
        seen += 1
    rng.shuffle(chosen)
    return [c.to_drawing() for c in chosen], seen


# --- Drawing -----------------------------------------------------------------

def draw_cell(strokes: Sequence[Stroke], width: int, height: int) -> Image.Image:
    """Black strokes on white, scaled to fit with the aspect ratio kept, y
    pointing down as in the data; drawn large and box-filtered down so lines
    look anti-aliased."""
    big_w, big_h = width * SUPERSAMPLE, height * SUPERSAMPLE
    image = Image.new("L", (big_w, big_h), 255)
    draw = ImageDraw.Draw(image)
    line_width = max(1, round(min(width, height) / 40)) * SUPERSAMPLE
    margin = line_width + 2 * SUPERSAMPLE
    points = np.concatenate([np.stack(s, axis=1) for s in strokes if len(s[0])])
    low = points.min(axis=0)
    extent = np.maximum(points.max(axis=0) - low, 1e-9)
    scale = min((big_w - 2 * margin) / extent[0], (big_h - 2 * margin) / extent[1])
    offset = (np.array([big_w, big_h]) - extent * scale) / 2
    radius = line_width / 2
    for x, y in strokes:
        if not len(x):
            continue
        xy = (np.stack([x, y], axis=1) - low) * scale + offset
        if len(xy) == 1 or (xy == xy[0]).all():
            cx, cy = xy[0]
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=0)
        else:
            draw.line(xy.ravel().tolist(), fill=0, width=line_width, joint="curve")
    return image.reduce(SUPERSAMPLE)


def _fit_caption(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def mosaic(drawings: Sequence[Drawing], rows: int, cols: int,
           cell: int) -> Image.Image:
    """A ``cols * cell`` by ``rows * cell`` grayscale image: one drawing per
    cell, row by row, its class name along the bottom of the cell."""
    font = ImageFont.load_default(size=max(10, cell // 12))
    image = Image.new("L", (cols * cell, rows * cell), 255)
    draw = ImageDraw.Draw(image)
    caption_height = font.getbbox("Ag")[3] + 4
    for i, drawing in enumerate(drawings[:rows * cols]):
        left, top = (i % cols) * cell, (i // cols) * cell
        image.paste(draw_cell(drawing.strokes, cell, cell - caption_height),
                    (left, top))
        caption = _fit_caption(drawing.word, draw, font, cell - 4)
        draw.text((left + cell / 2, top + cell - 2), caption, fill=0,
                  font=font, anchor="md")
    for c in range(1, cols):
        draw.line((c * cell, 0, c * cell, rows * cell), fill=200)
    for r in range(1, rows):
        draw.line((0, r * cell, cols * cell, r * cell), fill=200)
    return image


# --- Command line ------------------------------------------------------------

def render(input_pattern: str, output: str, rows: int = 5, cols: int = 5,
           cell: int = 128, seed: int = 0, classes: Sequence[str] | None = None,
           recognized_only: bool = False, limits: Limits = Limits()) -> dict:
    """Writes the mosaic PNG; returns what was drawn and what was skipped.
    Raises ``RenderError`` when there is nothing to draw."""
    if rows * cols * cell * cell > MAX_PIXELS:
        raise RenderError("--rows %d --cols %d --cell %d make a %dx%d image: at most %d pixels"
                          % (rows, cols, cell, cols * cell, rows * cell, MAX_PIXELS))
    if Path(output).is_dir():
        raise RenderError("--output %s is a folder: name the PNG file" % output)
    files = resolve_inputs(input_pattern)
    if not files:
        raise RenderError("no file matches --input %s" % input_pattern)
    rejects: collections.Counter = collections.Counter()

    def candidates() -> Iterator[Candidate]:
        for path in files:
            if not _regular(path, rejects):
                continue
            if is_ndjson(path):
                yield from read_ndjson(path, rejects, recognized_only, limits)
            else:
                yield from read_tfrecords(path, rejects, recognized_only)

    wanted = set(classes) if classes else None
    drawings, seen = pick(candidates(), rows * cols, seed, wanted)
    if not drawings:
        why = "; skipped: " + _format_rejects(rejects) if rejects else ""
        filters = " of class %s" % ",".join(sorted(wanted)) if wanted else ""
        raise RenderError("no drawing%s in %d file(s) matching --input %s%s"
                          % (filters, len(files), input_pattern, why))
    _save(mosaic(drawings, rows, cols, cell), output)
    return {"output": output, "files": len(files), "drawn": len(drawings),
            "candidates": seen, "rejects": dict(rejects)}


def _save(image: Image.Image, output: str) -> None:
    """Writes the PNG beside its final name, then renames it: a reader never
    sees half a file. An unwritable place is a ``RenderError``."""
    target = Path(output)
    tmp = target.with_name(".%s.tmp-%d" % (target.name, os.getpid()))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(tmp, format="PNG")
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RenderError("cannot write --output %s: %s" % (output, e.strerror or e)) from None


def _format_rejects(rejects: collections.Counter) -> str:
    return ", ".join("%d %s" % (n, reason) for reason, n in rejects.most_common())


def _positive(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least %d" % minimum)
        return value
    return parse


def build_parser() -> command_line.Parser:
    parser = command_line.Parser("quickdraw-render", "pipeline.render",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True,
                        help="ndjson or TFRecord file, glob or directory")
    parser.add_argument("--output", default="mosaic.png", help="PNG to write")
    parser.add_argument("--rows", type=_positive(1), default=5)
    parser.add_argument("--cols", type=_positive(1), default=5)
    parser.add_argument("--cell", type=_positive(MIN_CELL), default=128,
                        help="cell size in pixels")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="only these classes (space or comma separated)")
    parser.add_argument("--seed", type=int, default=0,
                        help="which drawings are picked")
    parser.add_argument("--recognized_only", action="store_true",
                        help="skip drawings the game did not recognise")
    parser.add_argument("--max_points", type=_positive(0), default=Limits().max_points,
                        help="skip ndjson drawings with more points (0: no cap)")
    parser.add_argument("--max_bytes", type=_positive(0), default=Limits().max_bytes,
                        help="skip longer ndjson lines (0: no cap)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.classes:
        args.classes = [c.strip() for arg in args.classes
                        for c in arg.split(",") if c.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0 done, 2 a user error (one line on stderr). TensorFlow's
    start-up lines, when it reads TFRecords, are left out of stderr."""
    return command_line.run_command(lambda: _render(parse_args(argv)), NATIVE_NOISE)


def _render(args: argparse.Namespace) -> int:
    result = render(args.input, args.output, args.rows, args.cols,
                    args.cell, args.seed, args.classes, args.recognized_only,
                    Limits(max_points=args.max_points, max_bytes=args.max_bytes))
    skipped = "; skipped " + _format_rejects(collections.Counter(result["rejects"])) \
        if result["rejects"] else ""
    print("wrote %s: %d drawings picked from %d in %d file(s)%s"
          % (result["output"], result["drawn"], result["candidates"],
             result["files"], skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
