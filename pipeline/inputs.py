"""Which files a run reads: what ``--input`` matches, less what pipeline runs wrote.

Local patterns are listed here rather than by Beam, with Beam's pattern
syntax (``*`` within a folder, ``**`` across folders): Beam's local listing
drops directories and dangling links without a word, and a directory or a
link whose target is gone, named like an input, must be reported as damaged
like any file that cannot be read. Object stores (gs://) hold objects only and
are listed by Beam.

A run never reads what a run writes. In an output folder (one holding
``manifest.json`` or ``pipeline.lock``, or this run's ``--output``) the names a
run writes there (shards, classes file, stats, rejects, manifest, lock,
``transform_output/``, ``.tmp-*`` and ``beam-temp-*`` leftovers) are skipped;
an output folder below the folder an input pattern starts from is skipped
whole. What is skipped is counted and named, never read.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
import warnings
from typing import NamedTuple

from apache_beam.io.filesystem import FileSystem
from apache_beam.io.filesystems import FileSystems

import dataset_manifest
import local_files
from ndjson_format import file_class
from pipeline import output_folder, sources
from pipeline.options import PipelineError, quote, quote_names

# A directory with one of these names, matched by an input pattern, stands where
# an input file was expected: it is read, and reported as a directory.
INPUT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")
_GLOB = re.compile(r"[*?\[]")


# What the pipeline reads when given no --input: the demo's sample.
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "sample")


class Matched(NamedTuple):
    """What the patterns match: files to read, and run outputs left out."""
    files: list[str]
    skipped: list[str]


def list_local(pattern: str) -> list[str]:
    """Every entry a local pattern matches, in Beam's syntax, that is not a
    folder to walk: files, special files (FIFOs, devices, sockets), links
    (dangling ones too) and directories named like input files in which the
    pattern matches nothing. A folder that cannot be listed raises OSError."""
    if not _GLOB.search(pattern):
        return [pattern] if os.path.lexists(pattern) else []
    if pattern.endswith("/"):
        pattern += "*"
    prefix, top = _literal_start(pattern)
    if not os.path.isdir(top or "."):
        return []
    # Without ``**`` a pattern names entries at one depth below ``top``.
    depth = None if "**" in pattern else pattern[len(prefix):].strip("/").count("/")
    with warnings.catch_warnings():  # "[[]", a literal "[", reads to re as a nested set
        warnings.simplefilter("ignore", FutureWarning)
        regex = re.compile(FileSystem.translate_pattern(pattern))
    found, folders = [], []

    def fail(error: OSError):
        raise error

    for dirpath, dirnames, filenames in os.walk(top or ".", onerror=fail):
        here = dirpath if top else os.path.normpath(dirpath)
        level = 0 if here in (top, ".") else os.path.relpath(here, top or ".").count("/") + 1
        for name in filenames:
            path = os.path.join(here, name) if here != "." else name
            if regex.match(path):
                found.append(path)
        for name in dirnames:
            path = os.path.join(here, name) if here != "." else name
            if name.endswith(INPUT_SUFFIXES) and regex.match(path):
                folders.append(path)
        if depth is not None and level >= depth:
            dirnames[:] = []
    return found + [d for d in folders if not any(f == d or f.startswith(d + "/") for f in found)]


_ESCAPED = re.compile(r"\[([*?\[]|\\\\)\]")


def _literal_start(pattern: str) -> tuple[str, str]:
    """The leading folders of a pattern that hold no wildcard, as written in
    the pattern and as the folder they name (a wildcard escaped by
    ``local_files.escape_pattern`` is a character): the walk starts there,
    so a folder named "link [1]" that is a link is walked too."""
    parts = pattern.split("/")[:-1]
    literal = 0
    while literal < len(parts) and not _GLOB.search(_ESCAPED.sub("", parts[literal])):
        literal += 1
    prefix = "/".join(parts[:literal])
    return prefix, _ESCAPED.sub(lambda m: m.group(1)[0], prefix)


def pattern_root(pattern: str) -> str:
    """The folder a pattern starts from: the part before its first wildcard,
    cut at a folder boundary; for a plain path, its folder."""
    head = _GLOB.split(pattern, 1)[0]
    return (head.rpartition("/")[0] or ("/" if head.startswith("/") else ".")) if head else "."


class RunOutputs:
    """Tells the files pipeline runs wrote. ``output``: this run's folder."""

    def __init__(self, output: str):
        self._output = _normal(output)
        self._known: dict[str, bool] = {}

    def is_output_folder(self, folder: str) -> bool:
        folder = _normal(folder)
        if folder not in self._known:
            self._known[folder] = folder == self._output or any(
                _exists(FileSystems.join(folder, name))
                for name in (dataset_manifest.MANIFEST_FILE, dataset_manifest.LOCK_FILE))
        return self._known[folder]

    def written_by_a_run(self, path: str, root: str) -> bool:
        """True when ``path`` lies in an output folder under a name runs write
        there, or in an output folder strictly below ``root`` (the folder its
        input pattern starts from)."""
        root = _normal(root)
        folder, name = _split(_normal(path))
        below_root = True
        while folder:
            below_root = below_root and folder != root and _inside(folder, root)
            if self.is_output_folder(folder) and (below_root or any(
                    fnmatch.fnmatchcase(name, p) for p in output_folder.RUN_NAMES)):
                return True
            parent, top = _split(folder)
            if parent == folder:
                break
            folder, name = parent, top
        return False


def match(patterns: list[str], roots: list[str], output: str) -> tuple[list[list[str]], list[str]]:
    """Per pattern, the paths it matches less run outputs; and the run outputs
    left out, sorted. ``roots``: the folder each pattern starts from."""
    outputs = RunOutputs(output)
    remote = [p for p in patterns if not sources.is_local(p)]
    listed = dict(zip(remote, (sorted(m.path for m in r.metadata_list)
                               for r in FileSystems.match(remote)))) if remote else {}
    per_pattern, skipped = [], set()
    for pattern, root in zip(patterns, roots):
        paths = listed[pattern] if pattern in listed else sorted(list_local(pattern))
        kept = []
        for path in paths:
            (skipped.add if outputs.written_by_a_run(path, root) else kept.append)(path)
        per_pattern.append(kept)
    return per_pattern, sorted(skipped)


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - a folder that cannot be checked holds no marker we can see
        return False


def _normal(path: str) -> str:
    if sources.is_local(path):
        return os.path.abspath(path)
    return path.rstrip("/") if not path.endswith("://") else path


def _split(path: str) -> tuple[str, str]:
    """(parent, name); the parent of a root (``/``, ``gs://bucket``) is itself."""
    if "://" in path:
        scheme, rest = path.split("://", 1)
        head, _, name = rest.rpartition("/")
        return (scheme + "://" + head, name) if head else (path, "")
    head, name = os.path.split(path)
    return (head, name) if name else (path, "")


def _inside(folder: str, root: str) -> bool:
    return folder.startswith(root.rstrip("/") + "/")


def match_inputs(pattern: str | None, classes: list[str] | None, output: str) -> Matched:
    """Files to read, and the files pipeline runs wrote that the input also
    matches, which are left out (above). A folder means its
    ``*.ndjson`` and ``*.ndjson.gz``. When every input file is a class file
    (``ndjson_format.file_class``), only the requested classes' files are
    read, and a requested class without a file is an error before the job starts."""
    patterns = local_files.split_list(SAMPLE_DIR if pattern is None else pattern)
    if not patterns:  # an unset shell variable: the sample is read only when --input is absent
        raise PipelineError("--input=%r names no file, folder or glob" % pattern)
    expanded = []
    owner = []  # the pattern each expanded pattern comes from
    roots = []  # the folder each expanded pattern starts from
    for p in patterns:
        # A local path that exists is that path, whatever characters its names
        # hold ("run [1]/", "a*b.ndjson"); anything else with * ? [ is a pattern.
        literal = sources.is_local(p) and os.path.lexists(p)
        is_glob = not literal and bool(_GLOB.search(p))
        if not is_glob and not p.endswith((".ndjson", ".gz", ".json")) and FileSystems.exists(p):
            base = p.rstrip("/")
            folder = local_files.escape_pattern(base) if literal else base
            expanded += [FileSystems.join(folder, "*.ndjson"), FileSystems.join(folder, "*.ndjson.gz")]
            owner += [p, p]
            roots += [base, base]
        else:
            expanded.append(local_files.escape_pattern(p) if literal else local_files.literal_folder(p))
            owner.append(p)
            roots.append(os.path.dirname(p) or "." if literal else pattern_root(p))
    try:
        found, skipped = match(expanded, roots, output)
    except Exception as e:  # an unreadable folder or a bucket that does not exist
        raise PipelineError("--input=%s cannot be listed: %s" % (pattern, " ".join(str(e).split())[:200])) from None
    matched = {p for p, paths in zip(owner, found) if paths}
    unmatched = [p for p in patterns if p not in matched]
    if unmatched and len(patterns) > 1:
        raise PipelineError("--input: %s matches no file%s" % (unmatched[0], _only_outputs(skipped)))
    files = sorted({f for paths in found for f in paths})
    if not files:
        raise PipelineError("--input=%s matches no file%s" % (pattern, _only_outputs(skipped)))
    for f in files:
        try:
            f.encode("utf-8")
        except UnicodeEncodeError:
            raise PipelineError("input file name %s is not valid UTF-8: rename the file" % ascii(f)) from None
    if classes:
        by_class = {file_class(f) for f in files}
        if None not in by_class:
            absent = [c for c in classes if c not in by_class]
            if absent:
                close = difflib.get_close_matches(absent[0], list(by_class), n=3)
                raise PipelineError("--classes: %s not in the input (no %s.ndjson[.gz] among its %d "
                                    "files)%s" % (quote_names(absent), quote(absent[0]), len(files),
                                                  "; closest: " + ", ".join(close) if close else ""))
            files = [f for f in files if file_class(f) in classes]
    return Matched(files, skipped)


def _only_outputs(skipped: list[str]) -> str:
    if not skipped:
        return ""
    return " but files pipeline runs write (%d, such as %s), which are never read" % (len(skipped), skipped[0])
