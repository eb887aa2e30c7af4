"""A small shape language for JSON records, so that a damaged record is
refused when read with one line saying where, instead of failing later with a
bare ``KeyError``.

A shape is a leaf (a key of ``LEAVES``), an object (``{field: shape}``;
``"*"``: every field) or a list (``[shape]``); a field whose name ends in
``?`` may be absent or null.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable

LEAVES: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: type(v) is str,
    "an integer": lambda v: type(v) is int,
    "a finite number": lambda v: type(v) in (int, float) and math.isfinite(v),
    "true or false": lambda v: type(v) is bool,
    "a list": lambda v: type(v) is list,
    "any value": lambda v: True,
}


def first_difference(value: Any, shape: Any, where: str = "") -> str | None:
    """What makes ``value`` differ from ``shape`` (the first difference, with
    its place, e.g. ``steps.train.classes[2]``), or None."""
    if isinstance(shape, str):
        ok = LEAVES[shape](value)
        expected = shape
    elif isinstance(shape, list):
        ok, expected = type(value) is list, "a list"
    else:
        ok, expected = type(value) is dict, "a JSON object"
    if not ok:
        return "%s should be %s, not %s" % (where or "the file", expected, _json_type(value))
    if isinstance(shape, list):
        for i, item in enumerate(value):
            problem = first_difference(item, shape[0], "%s[%d]" % (where, i))
            if problem:
                return problem
    elif isinstance(shape, dict):
        fields = ([(k, False, shape["*"]) for k in value] if "*" in shape else
                  [(k.rstrip("?"), k.endswith("?"), item) for k, item in shape.items()])
        for name, optional, item in fields:
            if optional and value.get(name) is None:
                continue
            if name not in value:
                return "%s has no '%s'" % (where or "the record", name)
            problem = first_difference(value[name], item, _place(where, name))
            if problem:
                return problem
    return None


def _place(where: str, name: str) -> str:
    """``where.name``, the name quoted when it is not plain text, and cut short."""
    text = name if name.isprintable() else json.dumps(name)
    text = text if len(text) <= 60 else text[:57] + "..."
    return "%s.%s" % (where, text) if where else text


def _json_type(value: Any) -> str:
    if type(value) is float and not math.isfinite(value):
        return str(value)
    return {dict: "an object", list: "a list", str: "a string", bool: str(value).lower(),
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), "?")
