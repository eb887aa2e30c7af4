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
import os
import random
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import command_line
from native_logs import NATIVE_NOISE
from ndjson_format import Limits
from pipeline.drawing_readers import Candidate, Drawing, Stroke, read_drawings, resolve_inputs

SUPERSAMPLE = 4       # strokes are drawn this much larger, then box-filtered
MIN_CELL = 32
MAX_PIXELS = 1 << 27  # the largest mosaic: 128 MB of grayscale, about 11,585 pixels square


class RenderError(command_line.UserError):
    """Input that leaves nothing to draw; reported in one line, exit code 2."""


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
    wanted = set(classes) if classes else None
    drawings, seen = pick(read_drawings(files, rejects, recognized_only, limits),
                          rows * cols, seed, wanted)
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
