"""The per-class split: which drawings go to train, eval and test.

Every drawing gets a rank from a seeded hash of its ``key_id``; each class
keeps its lowest-ranked drawings, so the selection is a uniform sample that
does not depend on file order, runner or parallelism, and needs memory for the
selected drawings only. The lowest ranks go to train, then eval, then test.
"""
from __future__ import annotations

import hashlib
import heapq

import tfrecord_schema as schema


def seeded_hash(seed: int, salt: bytes, key: bytes) -> int:
    """64-bit hash of ``key``, the same on every machine and Python version."""
    h = hashlib.blake2b(key, digest_size=8, key=b"%d" % seed, salt=salt[:16])
    return int.from_bytes(h.digest(), "big")


def rank_key(seed: int, key_id: str, source: str, line: int, text: bytes) -> tuple:
    """Sort key of a drawing within its class. Ties (equal key_ids) are broken
    by where the line came from, so the order is total."""
    identity = key_id.encode("utf-8") if key_id else text
    return (seeded_hash(seed, b"rank", identity), key_id, source, line)


def shuffle_key(seed: int, rank: tuple) -> int:
    """Position of a selected drawing in the output: mixes classes together.
    Derived from the drawing's identity alone, not from where its file lies."""
    return seeded_hash(seed, b"shuffle", rank[0].to_bytes(8, "big"))


class Quota:
    """How many drawings of one class each split takes."""

    def __init__(self, train: int, eval_: int, test: int):
        if min(train, eval_, test) < 0:
            raise ValueError("observations per class must be >= 0")
        self.counts = {schema.TRAIN: train, schema.EVAL: eval_, schema.TEST: test}
        self.total = train + eval_ + test

    def shard_keys(self, shards: int) -> list[tuple[str, int]]:
        """(split, shard) of every output file: the splits asked for only."""
        return [(s, i) for s in schema.SPLITS if self.counts[s] for i in range(shards)]

    def assign(self, ranked: list) -> list[tuple[str, object]]:
        """``ranked``: a class's selected drawings, lowest rank first."""
        out = []
        start = 0
        for split in schema.SPLITS:
            n = self.counts[split]
            out += [(split, item) for item in ranked[start:start + n]]
            start += n
        return out


def keep_lowest(candidates: list, n: int) -> list:
    """The ``n`` lowest-ranked candidates (tuples led by their rank), sorted."""
    if len(candidates) <= n:
        return sorted(candidates)
    return heapq.nsmallest(n, candidates)
