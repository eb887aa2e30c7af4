"""tf.train.Example encoding of a selected drawing.

The protobuf wire format of an Example is small and fixed, so it is written
directly from NumPy buffers: several times faster than building proto objects,
and deterministic (features in sorted order), which makes re-runs
byte-identical. Tests check the bytes against TensorFlow's own parser.
"""
from __future__ import annotations

import calendar
import functools

import numpy as np

import tfrecord_schema as schema


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _ONE_BYTE[value]
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
    return _ONE_BYTE[number << 3 | 2] + _varint(len(payload)) + payload


def _packed_varints(values: np.ndarray) -> bytes:
    """Varint encoding of many small non-negative ints (raster pixels) at once."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 1 << 14):
        return b"".join(_varint(int(x)) for x in v)
    two = v >= 128
    out = np.empty(v.size + int(two.sum()), dtype=np.uint8)
    pos = np.arange(v.size) + np.concatenate(([0], np.cumsum(two)[:-1]))
    out[pos] = np.where(two, (v & 0x7F) | 0x80, v)
    out[pos[two] + 1] = v[two] >> 7
    return out.tobytes()


def float_feature(values: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(2, _field(1, raw) if raw else b"")


def int64_feature(values) -> bytes:
    if isinstance(values, np.ndarray) and values.size > 16:
        packed = _packed_varints(values)
    else:
        packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if packed else b"")


def bytes_feature(values) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))


_KEYS: dict[str, bytes] = {}


def _key(name: str) -> bytes:
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = _field(1, name.encode("utf-8"))
    return key


def encode_example(features: dict[str, bytes]) -> bytes:
    """Serialises ``{name: encoded Feature}`` as a tf.train.Example."""
    entries = b"".join(_entry(name, features[name]) for name in sorted(features))
    return _field(1, entries)


def timestamp_seconds(text: str) -> int:
    """'2017-03-02 23:25:10.07453 UTC' -> seconds since the epoch (UTC); 0 if absent."""
    try:
        return calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]),
                                int(text[11:13]), int(text[14:16]), int(text[17:19])))
    except ValueError:
        return 0


def _entry(name: str, feature: bytes) -> bytes:
    """One ``map<string, Feature>`` entry of Features."""
    return _field(1, _key(name) + _field(2, feature))


@functools.lru_cache(maxsize=4096)
def _constant_entry(name: str, kind: str, value) -> bytes:
    """Entries that repeat across drawings (class, country, recognised) are built once."""
    feature = bytes_feature([value.encode("utf-8")]) if kind == "bytes" else int64_feature([value])
    return _entry(name, feature)


def _int64_entry(name: str, value: int) -> bytes:
    """A one-value int64 feature entry, written without intermediate objects."""
    v = _varint(value)
    key = _key(name)
    # Int64List{value: [packed]} inside Feature{int64_list} inside the map entry.
    inner = b"\x0a" + _ONE_BYTE[len(v)] + v
    feature = b"\x1a" + _ONE_BYTE[len(inner)] + inner
    entry = key + b"\x12" + _ONE_BYTE[len(feature)] + feature
    return b"\x0a" + _ONE_BYTE[len(entry)] + entry


def _key_id_entry(key_id: str) -> bytes:
    """``key_id`` as int64 when that keeps it exactly, else ``key_id_text``."""
    value = schema.key_id_int(key_id)
    if value is None:
        return _entry(schema.KEY_ID_TEXT, bytes_feature([key_id.encode("utf-8")]))
    return _int64_entry(schema.KEY_ID, value)


@functools.lru_cache(maxsize=4096)
def _shape_entry(length: int) -> bytes:
    return _entry(schema.SHAPE, int64_feature([length, schema.INK_CHANNELS]))


def _ink_entry(ink: np.ndarray) -> bytes:
    """The ``ink`` entry: the float32 buffer written as one packed field."""
    raw = np.ascontiguousarray(ink, dtype="<f4").tobytes()
    inner = (b"\x0a" + _varint(len(raw)) + raw) if raw else b""
    feature = b"\x12" + _varint(len(inner)) + inner
    entry = _key(schema.INK) + b"\x12" + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(entry)) + entry


def drawing_example(ink: np.ndarray, class_index: int, word: str, key_id: str,
                    countrycode: str, recognized: bool, timestamp: str,
                    img_64: np.ndarray | None = None) -> bytes:
    """The tutorial's three features plus the notebook's metadata, in sorted
    feature order (as ``encode_example`` writes them)."""
    entries = b"".join((
        _constant_entry(schema.CLASS_INDEX, "int64", class_index),
        _constant_entry(schema.COUNTRYCODE, "bytes", countrycode),
        _entry(schema.IMG_64, int64_feature(img_64.reshape(-1))) if img_64 is not None else b"",
        _ink_entry(ink),
        _key_id_entry(key_id),
        _constant_entry(schema.RECOGNIZED, "int64", int(recognized)),
        _shape_entry(len(ink)),
        _int64_entry(schema.TIMESTAMP, timestamp_seconds(timestamp)),
        _constant_entry(schema.WORD, "bytes", word),
    ))
    return b"\x0a" + _varint(len(entries)) + entries
