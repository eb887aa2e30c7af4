"""tf.train.Example encoding of a selected drawing.

The protobuf wire format of an Example is small and fixed, so it is written
directly from NumPy buffers: several times faster than building proto objects,
and deterministic (features in sorted order), which makes re-runs
byte-identical. Tests check the bytes against TensorFlow's own parser.
"""
from __future__ import annotations

import calendar
import time

import numpy as np

import tfrecord_schema as schema


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def float_feature(values: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(2, _field(1, raw) if raw else b"")


def int64_feature(values) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if packed else b"")


def bytes_feature(values) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))


def encode_example(features: dict[str, bytes]) -> bytes:
    """Serialises ``{name: encoded Feature}`` as a tf.train.Example."""
    entries = b"".join(
        _field(1, _field(1, name.encode("utf-8")) + _field(2, features[name]))
        for name in sorted(features))
    return _field(1, entries)


def timestamp_seconds(text: str) -> int:
    """'2017-03-02 23:25:10.07453 UTC' -> seconds since the epoch (UTC); 0 if absent."""
    if not text:
        return 0
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return 0


def key_id_int(key_id: str) -> int:
    """The dataset's key_id is a decimal string; anything else is stored as 0."""
    return int(key_id) if key_id.isdigit() and len(key_id) <= 18 else 0


def drawing_example(ink: np.ndarray, class_index: int, word: str, key_id: str,
                    countrycode: str, recognized: bool, timestamp: str,
                    img_64: np.ndarray | None = None) -> bytes:
    """The tutorial's three features plus the notebook's metadata."""
    features = {
        schema.INK: float_feature(ink.reshape(-1)),
        schema.SHAPE: int64_feature(ink.shape),
        schema.CLASS_INDEX: int64_feature([class_index]),
        schema.KEY_ID: int64_feature([key_id_int(key_id)]),
        schema.WORD: bytes_feature([word.encode("utf-8")]),
        schema.COUNTRYCODE: bytes_feature([countrycode.encode("utf-8")]),
        schema.RECOGNIZED: int64_feature([int(recognized)]),
        schema.TIMESTAMP: int64_feature([timestamp_seconds(timestamp)]),
    }
    if img_64 is not None:
        features[schema.IMG_64] = int64_feature(img_64.reshape(-1))
    return encode_example(features)
