"""What every command does with its command line and its user's mistakes.

One convention for all of them: a user error (a misspelled or missing flag,
a bad value, missing data or model) is one line on stderr starting with
``error: ``, and exit status 2; anything else is a bug or an outage and keeps
its traceback. The usage block argparse prints by default is left out: the
line names the flag, and ``--help`` shows them all with their defaults.
No TensorFlow or Beam here, so that ``--help`` and flag errors are instant.
"""
from __future__ import annotations

import argparse
import difflib
import errno
import os
import re
import sys
from typing import Callable, Sequence

from native_logs import NATIVE_INFO_NOISE, NativeStderrFilter

# A message longer than this is cut: a flag's value can be a whole file.
MAX_MESSAGE = 300


class UserError(Exception):
    """A problem with the user's input or setup, not a bug: one line, exit 2."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, at most ``limit`` characters (cut ones say so)."""
    text = re.sub(r"\s*\n\s*", " ", str(text)).strip()
    if len(text) > limit:
        text = text[:limit - 15].rstrip() + " ... (cut here)"
    return text


def report(error: object) -> int:
    """Prints a user error as the command's one line on stderr; returns 2."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print("error: %s" % one_line(str(error)), file=sys.stderr, flush=True)
    return 2


def prog(command: str, module: str) -> str:
    """The name the user typed: the console script's, or ``python -m module``."""
    return command if os.path.basename(sys.argv[0] or "") == command else "python -m " + module


def unknown_option(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return "unknown option %s%s (see --help)" % (name, "; did you mean %s?" % close[0] if close else "")


def unknown_options(args: Sequence[str], known: Sequence[str]) -> list[str]:
    """The option names in ``args`` that are not ``known``, read as argparse
    reads them (``--x=1`` and ``--x 1`` alike): a word with a space that is not
    a known option is a value, and ``--`` ends the options."""
    names = []
    for token in args:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if token.startswith("--") and name not in known and " " not in token:
            names.append(name)
    return names


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds each option's default to its help, where there is one to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not False
        if shown and action.default is not argparse.SUPPRESS and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with the project's convention: a misspelled flag is named
    (with the closest known one) before any other complaint, and every error
    is one line and exit status 2."""

    def __init__(self, command: str, module: str, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(prog=prog(command, module), **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = [o for action in self._actions for o in action.option_strings]
        for name in unknown_options(args, known):
            self.error(unknown_option(name, known))
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        sys.exit(report(message))


def run_command(body: Callable[[], int], noise: re.Pattern = NATIVE_INFO_NOISE,
                log_level: str = "2") -> int:
    """Runs a command's body with TensorFlow's native noise filtered out of
    stderr (fatal lines always pass, also when the process dies natively)
    and a ``UserError`` turned into its one line and exit status 2.
    ``TF_CPP_MIN_LOG_LEVEL`` defaults to ``log_level`` for this process and
    its workers; set it to 0 to see every native line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", log_level)
    with NativeStderrFilter(noise):
        try:
            return body()
        except UserError as e:
            return report(e)
        except Exception as e:  # a full disk is the machine's state, not a bug: one line
            full = storage_full(e)
            if full is None:
                raise
            return report("%s: %s; free space and run again" % (full, one_line(str(e), 300)))


_STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)
# How a Beam runner quotes a worker's OSError: "OSError: [Errno 28] No space ...".
_QUOTED_OS_ERROR = re.compile(r"\b(?:OS|IO)Error: \[Errno (\d+)\]")


def storage_full(error: BaseException) -> str | None:
    """"No space left on device" (or the quota's message) when that is what
    stopped a command: an OSError, one quoted in the error a Beam runner
    raises for a worker's, TensorFlow's error for a write ("<path>; <the
    system's message>"), or what caused any of them. An interrupt is never one."""
    if not isinstance(error, Exception):
        return None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_FULL:
            return os.strerror(current.errno)
        try:
            text = str(current)
        except Exception:  # noqa: BLE001 - an exception that cannot say itself says nothing here
            text = ""
        quoted = _QUOTED_OS_ERROR.search(text)
        if quoted and int(quoted.group(1)) in _STORAGE_FULL:
            return os.strerror(int(quoted.group(1)))
        for number in _STORAGE_FULL:  # TensorFlow's "<path>; <message>", raised or quoted
            if "; " + os.strerror(number) in text:
                return os.strerror(number)
        current = current.__cause__ if current.__cause__ is not None else (
            None if current.__suppress_context__ else current.__context__)
    return None
