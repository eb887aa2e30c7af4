"""``quickdraw-download``: the data notebook's first step, "Get the data".

    quickdraw-download --group=zoo --dest=data/zoo
    quickdraw-download --classes=cat,dog --format=raw --dest=data/raw --jobs=8
    quickdraw-download --all --dest=/data/quickdraw

Fetches ``<base>/full/<format>/<class>.ndjson`` from the dataset's public
bucket over HTTPS into ``<dest>/<class>.ndjson`` (the names the pipeline
reads as class files), several at once. The names are checked before
anything is fetched; the objects' sizes (HEAD requests) are checked against
the free space of ``--dest`` before the first byte. Each file is resumed,
verified and renamed into place (``pipeline/http_fetch.py``), so running the
same command again finishes an interrupted download and fetches nothing
that is already there and correct.

Exit status: 0 every file is there and verified; 1 some file failed (each
named on stderr, with its reason); 2 a user error, as one line on stderr,
before anything was fetched; 130 interrupted (run again to resume).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from command_line import Parser, UserError, one_line, report
from pipeline import class_groups
from pipeline.http_fetch import PART, Outcome, fetch, object_url
from pipeline.http_requests import Cancel, Cancelled, FetchError, Settings, head
from pipeline.object_digests import ObjectInfo
from pipeline.transfer_progress import Progress, duration_text, size_text

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset"
FORMATS = ("simplified", "raw")
CHECK_NAMES = {"crc32c": "CRC-32C", "md5": "MD5", "size": "size only (the server gave no checksum)"}


def _whole(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("%r: must be a whole number from %d to %d" % (text, low, high))
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError("%r: must be a positive number of seconds" % text)
    return value


def build_parser() -> Parser:
    parser = Parser("quickdraw-download", "pipeline.download",
                    description=__doc__.split("\n\n", 1)[0].strip("`"))
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--classes", help="comma-separated class names, or a file with one per line")
    which.add_argument("--group", help="one of the data notebook's groups: %s" % ", ".join(
        "%s (%d classes)" % (name, len(members)) for name, members in class_groups.GROUPS.items()))
    which.add_argument("--all", action="store_true", help="all 345 classes")
    which.add_argument("--list", action="store_true", help="print the groups and the class names, and exit")
    parser.add_argument("--format", choices=FORMATS, default="simplified",
                        help="simplified (aligned, resampled strokes) or raw (the original points and times)")
    parser.add_argument("--dest", help="folder to download into, created if missing")
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL, help="where the bucket is served")
    parser.add_argument("--jobs", type=_whole(1, 64), default=4, help="files fetched at once")
    parser.add_argument("--timeout", type=_seconds, default=30.0,
                        help="seconds a connection or a read may wait; a body slower than 1 KiB per "
                             "timeout counts as stalled")
    parser.add_argument("--retries", type=_whole(0, 1000), default=5,
                        help="attempts in a row that bring no new byte, before a file is given up")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def chosen_classes(args: argparse.Namespace) -> list[str]:
    """The classes the flags name; an unknown one is a ``UserError``."""
    try:
        if args.classes is not None:
            return class_groups.parse_class_list(args.classes)
        if args.group is not None:
            return class_groups.group(args.group)
    except class_groups.UnknownName as e:
        raise UserError(str(e)) from None
    if args.all:
        return class_groups.all_classes()
    raise UserError("name what to fetch: --classes=cat,dog, --group=NAME or --all (see --list)")


def writable_folder(dest: str | None) -> Path:
    """``--dest``, created if missing and checked writable."""
    if not dest:
        raise UserError("--dest is missing: name the folder to download into")
    folder = Path(dest)
    try:  # Path.exists raises on a name the system refuses (too long)
        if folder.exists() and not folder.is_dir():
            raise UserError("--dest %s is a file: name a folder" % dest)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError("--dest %s cannot be written: %s" % (one_line(dest, 100), e.strerror or e)) from None
    return folder


def checked_base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError("--base_url %r: must be an http:// or https:// URL" % url)
    try:
        parts.port
    except ValueError as e:
        raise UserError("--base_url %r: %s" % (url, e)) from None
    return url.rstrip("/")


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def already_there(folder: Path, file_name: str, size: int) -> int:
    """Bytes of an object that need not be fetched again: the whole file when
    its size is right (its checksum is checked before it counts as present),
    else the ``.part`` a fetch will resume."""
    if _size_of(folder / file_name) == size:
        return size
    part = _size_of(folder / (file_name + PART))
    return part if part <= size else 0


@dataclass
class Report:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class Download:
    """One run: sizes, the disk check, the parallel fetches and the summary."""

    def __init__(self, classes: list[str], folder: Path, base_url: str, data_format: str,
                 jobs: int, settings: Settings):
        self.classes, self.folder, self.jobs, self.settings = classes, folder, jobs, settings
        self.urls = {c: object_url(base_url, data_format, c) for c in classes}
        self.cancel = Cancel()
        self.stop_reason: str | None = None
        self.report = Report()

    def sizes(self) -> dict[str, ObjectInfo]:
        """HEAD of every object, ``--jobs`` at a time; failures go to the report."""
        infos = {}
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            futures = {pool.submit(head, self.urls[c], self.settings, self.cancel): c for c in self.classes}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    infos[name] = future.result()
                except FetchError as e:
                    self.report.failures[name] = "%s: %s" % (self.urls[name], e)
        return {c: infos[c] for c in self.classes if c in infos}

    def check_space(self, infos: dict[str, ObjectInfo]) -> None:
        need = sum(i.size - already_there(self.folder, c + ".ndjson", i.size) for c, i in infos.items())
        free = shutil.disk_usage(self.folder).free
        if need > free:
            raise UserError("not enough space in %s: the %d file(s) need %s more, %s is free"
                            % (self.folder, len(infos), size_text(need), size_text(free)))

    def _one(self, name: str, info: ObjectInfo, progress: Progress) -> None:
        try:
            if self.cancel.is_set():
                raise Cancelled()
            outcome = fetch(self.urls[name], self.folder, name + ".ndjson", info, self.settings,
                            progress.add, self.cancel)
        except FetchError as e:
            if e.fatal and not self.cancel.is_set():
                self.stop_reason = str(e)
                self.cancel.set()
            self._failed(name, str(e), progress)
            return
        except Cancelled:
            if self.stop_reason:
                self._failed(name, "not finished: the run stopped (%s)" % self.stop_reason, progress)
            return
        self.report.outcomes[name] = outcome
        progress.file_done()
        if outcome.refetched:
            progress.note("%s.ndjson: fetched again after a first copy was refused (%s)"
                          % (name, outcome.refetched))

    def _failed(self, name: str, reason: str, progress: Progress) -> None:
        self.report.failures[name] = reason
        progress.note("failed: %s.ndjson: %s" % (name, reason), sys.stderr)

    def fetch_all(self, infos: dict[str, ObjectInfo]) -> bool:
        """Fetches every object; False when interrupted."""
        total = sum(i.size for i in infos.values())
        done = sum(already_there(self.folder, c + ".ndjson", i.size) for c, i in infos.items())
        progress = Progress(len(infos), total, done)
        with progress, concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(self._one, c, i, progress) for c, i in infos.items()]
            for name in self.report.failures:
                progress.note("failed: %s.ndjson: %s" % (name, self.report.failures[name]), sys.stderr)
            try:
                while concurrent.futures.wait(futures, timeout=0.2).not_done:
                    pass
            except KeyboardInterrupt:
                self.cancel.set()
                concurrent.futures.wait(futures)
                return False
        for future in futures:
            future.result()
        return True

    def summary(self, seconds: float) -> str:
        outcomes = self.report.outcomes.values()
        fetched = [o for o in outcomes if not o.present]
        received = sum(o.fetched for o in fetched)
        lines = ["Done in %s: %d file(s) fetched (%s, %s/s), %d already there, %d failed." % (
            duration_text(seconds), len(fetched), size_text(received), size_text(received / max(seconds, 1e-3)),
            len(outcomes) - len(fetched), len(self.report.failures))]
        checks = {}
        for o in outcomes:
            checks[o.check] = checks.get(o.check, 0) + 1
        if checks:
            lines.append("Verified: " + ", ".join("%d by %s" % (n, CHECK_NAMES[k]) for k, n in sorted(checks.items())))
        refetched = sum(1 for o in outcomes if o.refetched)
        if refetched:
            lines.append("Fetched again after a checksum or size mismatch: %d" % refetched)
        if self.report.failures:
            lines.append("Failed: %s (reasons above); run the same command again to retry them"
                         % ", ".join(sorted(self.report.failures)))
        return "\n".join(lines)


def _print_list() -> int:
    print("Groups (the data notebook's):")
    for name, members in class_groups.GROUPS.items():
        print("  %s: %s" % (name, ", ".join(members)))
    classes = class_groups.all_classes()
    print("Classes (%d):" % len(classes))
    for name in classes:
        print("  " + name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        return _print_list()
    try:
        classes = chosen_classes(args)
        base_url = checked_base_url(args.base_url)
        folder = writable_folder(args.dest)
    except UserError as e:
        return report(e)
    print("Quick, Draw! download: %d %s file(s) from %s into %s" % (
        len(classes), args.format, base_url, folder), flush=True)
    started = time.monotonic()
    run = Download(classes, folder, base_url, args.format, args.jobs, Settings(args.timeout, args.retries))
    try:
        infos = run.sizes()
    except KeyboardInterrupt:
        print("Interrupted before any file was fetched.")
        return 130
    try:
        run.check_space(infos)
    except UserError as e:
        return report(e)
    if not run.fetch_all(infos):
        print("Interrupted: the partial files (*%s) stay; run the same command again to resume." % PART)
        return 130
    print(run.summary(time.monotonic() - started), flush=True)
    return 1 if run.report.failures else 0

if __name__ == "__main__":
    sys.exit(main())
