"""The eval report's pictures: the confusion matrix and the reliability diagram (PIL only).

Both are read by people deciding whether a model is good enough, so they
carry their own legend: the confusion matrix a colour scale and, when the
classes are few enough for cells to hold text, the counts; the reliability
diagram its axes, the diagonal of perfect calibration, and the number of
eval drawings behind each bar.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

# A white-to-dark-blue scale; shares map linearly along it.
SCALE = np.array([[255, 255, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181],
                  [8, 48, 107]], np.float64)
NAMED_CLASSES = 40     # up to this many classes, names and counts are drawn
TEXT = "black"


def colour(share: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` for shares in [0, 1] on ``SCALE``."""
    position = np.clip(share, 0.0, 1.0) * (len(SCALE) - 1)
    low = np.minimum(position.astype(np.int64), len(SCALE) - 2)
    frac = (position - low)[..., np.newaxis]
    return (SCALE[low] * (1 - frac) + SCALE[low + 1] * frac).round().astype(np.uint8)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _colour_bar(draw: ImageDraw.ImageDraw, left: int, top: int, height: int) -> None:
    """A vertical scale from 0% (bottom) to 100% of the row, labelled."""
    for y in range(height):
        draw.line([(left, top + y), (left + 14, top + y)],
                  fill=tuple(int(v) for v in colour(np.array(1.0 - y / (height - 1)))))
    draw.rectangle([left, top, left + 14, top + height - 1], outline=TEXT)
    for share in (0.0, 0.5, 1.0):
        y = top + int(round((1.0 - share) * (height - 1)))
        draw.text((left + 18, y - 5), "%d%%" % round(share * 100), fill=TEXT)
    draw.text((left - 4, top + height + 4), "share of", fill=TEXT)
    draw.text((left - 4, top + height + 16), "true class", fill=TEXT)


def confusion_chart(matrix: np.ndarray, classes: list[str]) -> Image.Image:
    """Row-normalised heat map (true class down, predicted across) with a colour scale;
    class names and the counts in the cells when there are few classes."""
    n = len(classes)
    named = n <= NAMED_CLASSES
    cell = max(2, min(24, 800 // n))
    margin = 110 if named else 4
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    heat = Image.fromarray(colour(share), mode="RGB").resize((n * cell, n * cell), Image.NEAREST)
    side = margin + n * cell
    image = Image.new("RGB", (side + 90, max(side, margin + 200) + 4), "white")
    image.paste(heat, (margin, margin))
    draw = ImageDraw.Draw(image)
    _colour_bar(draw, side + 16, margin, min(n * cell, 200) if n * cell >= 60 else 60)
    if not named:
        return image
    draw.text((2, 2), "rows: true class", fill=TEXT)
    draw.text((2, 16), "columns: predicted", fill=TEXT)
    for i, name in enumerate(classes):
        draw.text((2, margin + i * cell + cell // 2 - 5), name[:16], fill=TEXT)
        label = Image.new("RGB", (margin - 4, 12), "white")
        ImageDraw.Draw(label).text((0, 0), name[:16], fill=TEXT)
        image.paste(label.rotate(90, expand=True), (margin + i * cell + cell // 2 - 6, 2))
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            text = str(int(count))
            width = draw.textlength(text)
            draw.text((margin + j * cell + (cell - width) / 2, margin + i * cell + cell // 2 - 5),
                      text, fill="white" if share[i, j] > 0.5 else TEXT)
    return image


def reliability_diagram(reliability: dict, temperature: float, size: int = 320) -> Image.Image:
    """Accuracy against top-1 probability per bin, before and after temperature scaling.

    ``reliability`` is the eval report's: ``uncalibrated`` and ``calibrated``
    lists of bins (``count``, ``confidence``, ``accuracy``). Bars are the
    calibrated model's accuracy per bin (the number of drawings at their
    foot), grey outlines the uncalibrated model's; a perfectly calibrated
    model's bars reach the diagonal.
    """
    left, top, plot = 48, 52, size
    image = Image.new("RGB", (left + plot + 20, top + plot + 48), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 4), "reliability: accuracy vs. top-1 probability", fill=TEXT)
    draw.text((left, 18), "bars: temperature %.2f   grey: temperature 1" % temperature, fill=TEXT)

    def point(x: float, y: float) -> tuple[float, float]:
        return left + x * plot, top + (1.0 - y) * plot

    bins = len(reliability["calibrated"])
    width = plot / bins
    for series, fill, outline in (("calibrated", (107, 174, 214), (8, 48, 107)),
                                  ("uncalibrated", None, (150, 150, 150))):
        for b, entry in enumerate(reliability[series]):
            if not entry["count"]:
                continue
            x0, y0 = point(b / bins, entry["accuracy"])
            draw.rectangle([x0 + 1, y0, x0 + width - 1, top + plot], fill=fill, outline=outline)
            if series == "calibrated":
                draw.text((x0 + 2, top + plot - 12), str(entry["count"]), fill=TEXT)
    draw.line([point(0, 0), point(1, 1)], fill=(200, 0, 0), width=1)
    draw.rectangle([left, top, left + plot, top + plot], outline=TEXT)
    for tick in (0.0, 0.5, 1.0):
        x, y = point(tick, tick)
        draw.text((x - 8, top + plot + 4), "%.1f" % tick, fill=TEXT)
        draw.text((left - 26, y - 5), "%.1f" % tick, fill=TEXT)
    draw.text((left + plot // 2 - 60, top + plot + 20), "top-1 probability", fill=TEXT)
    draw.text((left - 26, top - 16), "accuracy", fill=TEXT)
    return image
