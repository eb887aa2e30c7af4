"""The per-class split: which drawings go to train, eval and test.

Every drawing gets a rank from a seeded hash of its ``key_id``; each class
keeps its lowest-ranked drawings, so the selection is a uniform sample that
does not depend on file order, runner or parallelism, and needs memory for the
selected drawings only. The lowest ranks go to train, then eval, then test.

Copies of a drawing (equal ``key_id``s within a class) have equal ranks: the
first copy counts, the others are dropped and counted as duplicates. Copies
are only looked for among the drawings a class selects; a copy of a drawing
that is not selected counts as unselected, like its original. The same
``key_id`` under two different classes is two drawings, one in each class
(the dataset's key_ids are unique across classes; the validator rejects a
line whose word is not its file's class).
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

import tfrecord_schema as schema

RANK_FIELDS = 4


def seeded_hash(seed: int, salt: bytes, key: bytes) -> int:
    """64-bit hash of ``key``, the same on every machine and Python version."""
    h = hashlib.blake2b(key, digest_size=8, key=b"%d" % seed, salt=salt[:16])
    return int.from_bytes(h.digest(), "big")


def rank_key(seed: int, key_id: str, source: int, offset: int, text: bytes) -> tuple:
    """Sort key of a drawing within its class: ``(hash, identity, file,
    offset)``, four unsigned 64-bit integers. The first two are hashes of the
    drawing's key_id (of its text when it has none): copies of a drawing share
    them, and two different drawings share both with a chance of 2^-128. The
    rest, the file's index in the sorted input list and the line's byte offset,
    order the copies, so the order is total. Integers of fixed size let a
    class's candidates travel as one array of 32 bytes per drawing (see
    ``lowest_ranks``)."""
    ident = key_id.encode("utf-8") if key_id else text
    return (seeded_hash(seed, b"rank", ident), seeded_hash(seed, b"identity", ident), source, offset)


def identity(rank: tuple) -> tuple:
    """What copies of one drawing have in common."""
    return rank[:2]


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


class ClassPlan(NamedTuple):
    """What one class writes: the last rank of each split that got drawings
    (in split order) and the ranks of the extra copies, which are dropped."""
    cuts: tuple
    dropped: frozenset
    selected: dict
    duplicates: int


def plan_class(ranks: list, quota: Quota) -> ClassPlan:
    """``ranks``: the class's candidates, sorted, with every copy of each.
    The first copy of a drawing (lowest file, then offset) is the one kept."""
    kept: list = []
    dropped: list = []
    last = None
    for rank in ranks:
        ident = identity(rank)
        if ident == last:
            dropped.append(rank)
            continue
        if len(kept) == quota.total:
            break
        kept.append(rank)
        last = ident
    cuts = []
    selected = {}
    start = 0
    for split in schema.SPLITS:
        n = min(quota.counts[split], len(kept) - start)
        selected[split] = n
        if n:
            cuts.append((split, kept[start + n - 1]))
        start += n
    return ClassPlan(tuple(cuts), frozenset(dropped), selected, len(dropped))


def split_of(rank: tuple, plan: ClassPlan) -> str | None:
    """The split a candidate goes to, None if it is not written."""
    if rank in plan.dropped:
        return None
    for split, last in plan.cuts:
        if rank <= last:
            return split
    return None


def keep_lowest(candidates: list, n: int) -> list:
    """The candidates (tuples led by their rank) of the ``n`` lowest-ranked
    drawings with every copy of them, sorted.
    Copies stay until the whole class is seen: only then is it known which
    copy comes first."""
    candidates = sorted(candidates)
    distinct = 0
    last = None
    for i, item in enumerate(candidates):
        ident = identity(item[0])
        if ident != last:
            distinct += 1
            if distinct > n:
                return candidates[:i]
            last = ident
    return candidates


def rank_array(ranks: list) -> np.ndarray:
    """Rank tuples -> an ``(n, 4)`` uint64 array, one rank per row."""
    return np.array(ranks, dtype=np.uint64).reshape(-1, RANK_FIELDS)


def lowest_ranks(ranks: np.ndarray, n: int) -> np.ndarray:
    """``keep_lowest`` for an array of ranks: the rows of the ``n`` lowest
    distinct drawings with every copy of them, sorted."""
    ranks = ranks[np.lexsort(ranks.T[::-1])]
    new = np.ones(len(ranks), dtype=bool)
    new[1:] = np.any(ranks[1:, :2] != ranks[:-1, :2], axis=1)
    return ranks[np.cumsum(new) <= n]
