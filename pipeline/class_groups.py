"""Which classes to fetch: names, the data notebook's groups, or all 345.

The notebook works on a group of classes rather than the whole dataset (two
pets to start, ten zoo animals, all 43 animals); the groups are kept here with
its names so that ``quickdraw-download --group=zoo`` fetches what the notebook
does. Every name is checked against ``dataset_categories.CATEGORIES`` before
anything is fetched, and a misspelt one gets the closest real name.
"""
from __future__ import annotations

import difflib
import os

from dataset_categories import CATEGORIES

GROUPS: dict[str, tuple[str, ...]] = {
    "pets": ("cat", "dog"),
    "zoo": ("elephant", "giraffe", "kangaroo", "lion", "monkey", "panda",
            "penguin", "rhinoceros", "tiger", "zebra"),
    "animals": ("bat", "bird", "butterfly", "camel", "cat", "cow", "crab",
                "crocodile", "dog", "dolphin", "duck", "elephant", "fish",
                "frog", "giraffe", "hedgehog", "horse", "kangaroo", "lion",
                "lobster", "monkey", "mosquito", "mouse", "octopus", "owl",
                "panda", "parrot", "penguin", "pig", "rabbit", "raccoon",
                "rhinoceros", "scorpion", "sea turtle", "shark", "sheep",
                "snail", "spider", "squirrel", "teddy-bear", "tiger",
                "whale", "zebra"),
}


class UnknownName(ValueError):
    """A class or group that does not exist; the message suggests the closest."""


def suggest(name: str, known: list[str] | frozenset[str]) -> str:
    """``; did you mean X?`` for the closest of ``known``, or nothing.

    Case, spaces, hyphens and underscores are ignored first (``Sea_Turtle`` is
    ``sea turtle``, ``eiffel tower`` is ``The Eiffel Tower``), then spelling."""
    def folded(text: str) -> str:
        text = text.lower().replace("_", " ").replace("-", " ")
        return " ".join(w for w in text.split() if w != "the")
    by_fold = {folded(k): k for k in known}
    match = by_fold.get(folded(name))
    if match is None:
        wanted = folded(name)
        close = difflib.get_close_matches(wanted, list(by_fold), n=5, cutoff=0.6)
        # Ties (``dgo``: ``dog`` and ``dragon``) go to the nearest length.
        ranked = sorted(close, key=lambda k: (-round(difflib.SequenceMatcher(None, wanted, k).ratio(), 3),
                                              abs(len(k) - len(wanted))))
        match = by_fold[ranked[0]] if ranked else None
    return "; did you mean %r?" % match if match else ""


def parse_class_list(value: str) -> list[str]:
    """``--classes``: comma-separated names, or a file with one name per line
    (the pipeline's ``--classes`` takes the same); order kept, repeats dropped."""
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as f:
                names = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UnknownName("--classes=%s cannot be read as a file of class names: %s" % (value, e)) from None
    else:
        names = value.split(",")
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise UnknownName("--classes=%r names no class" % value)
    for name in names:
        if name not in CATEGORIES:
            raise UnknownName("unknown class %r in --classes%s (the 345 names are listed by --list)"
                              % (name, suggest(name, CATEGORIES)))
    return names


def group(name: str) -> list[str]:
    """The classes of one of the notebook's groups."""
    if name not in GROUPS:
        raise UnknownName("unknown group %r%s (groups: %s)"
                          % (name, suggest(name, list(GROUPS)), ", ".join(GROUPS)))
    return list(GROUPS[name])


def all_classes() -> list[str]:
    """The 345 classes, sorted as the bucket lists them (byte order)."""
    return sorted(CATEGORIES)
