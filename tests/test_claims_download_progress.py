"""docs/data.md 'What the command does' and 'When things go wrong': the
progress line's timing (twice a second on a terminal, every 30 s in a log,
the rate over the last 10 s), the pauses between attempts (1, 2, 4 ... s,
the first at most --timeout, none over 30 s, counted in a row without a new
byte), the statuses tried again, a Content-Length of at most 18 digits, and
the partial and lock files' names."""
from __future__ import annotations

import io

import pytest

from download_helpers import sample_objects, serving
from pipeline import download, http_fetch, http_requests, transfer_progress

MiB = 2 ** 20


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_twice_a_second_on_a_terminal_and_every_30_seconds_in_a_log():
    """docs/data.md:59-61: on a terminal one line, rewritten twice a second;
    otherwise the same line every 30 seconds."""
    assert transfer_progress.Progress(1, 10, stream=_Terminal()).every == 0.5
    assert transfer_progress.Progress(1, 10, stream=io.StringIO()).every == 30.0


@pytest.mark.parametrize("burst_at, counted", [(12, True), (10, False)])
def test_the_rate_is_over_the_last_10_seconds(burst_at, counted):
    """docs/data.md:61: the rate over the last 10 seconds. The line is drawn
    every second; 10 MiB arrive in one second, the rest of the time nothing.
    Seen from second 21, a burst in second 12 is in the window and one in
    second 10 is not."""
    progress = transfer_progress.Progress(1, 100 * MiB, stream=io.StringIO())
    t0 = progress.started
    rate = None
    for second in range(1, 22):
        if second == burst_at:
            progress.add(10 * MiB)
        rate = progress.rate(t0 + second)
    assert rate == pytest.approx(1 * MiB if counted else 0.0)


class _Clock:
    """time.monotonic and time.sleep for http_requests: sleeping moves the clock."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _pauses(monkeypatch, settings, outcomes):
    """The pauses between the attempts of ``http_requests.attempts`` when each
    attempt brings the new bytes ``outcomes`` lists (None: succeeds)."""
    clock = _Clock()
    monkeypatch.setattr(http_requests, "time", clock)
    starts, received = [], [0]

    def attempt():
        starts.append(clock.now)
        new = outcomes[len(starts) - 1]
        if new is None:
            return "done"
        received[0] += new
        raise http_requests.Retry("HTTP 503 Service Unavailable")
    try:
        result = http_requests.attempts(settings, lambda: received[0], http_requests.Cancel(), attempt)
    except http_requests.FetchError as e:
        result = e
    return [b - a for a, b in zip(starts, starts[1:])], result


def _close(pauses, expected):
    """The pause is waited out in sleeps of at most 0.1 s, so it ends up to 0.1 s late."""
    return len(pauses) == len(expected) and all(e <= p <= e + 0.1 + 1e-6 for p, e in zip(pauses, expected))


def test_pauses_of_1_2_4_seconds_none_over_30(monkeypatch):
    """docs/data.md:78: tried again after 1, 2, 4 ... seconds (none over 30 s);
    --retries counts the attempts in a row that bring no new byte."""
    pauses, result = _pauses(monkeypatch, http_requests.Settings(timeout=30, retries=8), [0] * 9)
    assert _close(pauses, [1, 2, 4, 8, 16, 30, 30, 30]), pauses
    assert isinstance(result, http_requests.FetchError)
    assert "gave up after 9 attempts in a row without progress" in str(result)


def test_the_first_pause_is_at_most_the_timeout(monkeypatch):
    """docs/data.md:78: the first pause at most --timeout."""
    pauses, _ = _pauses(monkeypatch, http_requests.Settings(timeout=0.25, retries=3), [0, 0, 0, 0])
    assert _close(pauses, [0.25, 0.5, 1.0]), pauses


def test_a_download_that_keeps_moving_is_not_given_up(monkeypatch):
    """docs/data.md:78: an attempt that brings new bytes starts the count
    again, so a download that keeps moving is not given up."""
    outcomes = [0, 0, 100, 0, 0, 100, 0, 0, 100, 0, 0, None]
    pauses, result = _pauses(monkeypatch, http_requests.Settings(timeout=30, retries=2), outcomes)
    assert result == "done"
    assert _close(pauses, [1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 2]), pauses


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_these_statuses_are_tried_again(tmp_path, status):
    """docs/data.md:78: HTTP 408, 429 and the 5xx of an overloaded or
    failing server are tried again; the file then arrives."""
    objects = sample_objects()
    with serving(objects) as bucket:
        bucket.faults.status["cat"] = [status]
        assert download.main(["--dest=%s" % tmp_path, "--base_url=%s" % bucket.url,
                              "--timeout=0.5", "--classes=cat"]) == 0
    assert (tmp_path / "cat.ndjson").read_bytes() == objects["cat"]


class _Response:
    def __init__(self, value):
        self.value = value

    def getheader(self, name):
        return self.value


@pytest.mark.parametrize("value, size", [("9" * 18, 10 ** 18 - 1), ("9" * 19, None), ("-5", None),
                                         ("\u00b2", None), ("0", 0)])
def test_a_content_length_of_at_most_18_ascii_digits(value, size):
    """docs/data.md:84: a Content-Length that is not plain ASCII digits
    (`²`, `-5`), or of more than 18 of them, gives no size."""
    assert http_requests.declared_length(_Response(value)) == size


def test_partial_and_lock_files_never_end_in_ndjson():
    """docs/data.md:52, :95, :97-98: `<class>.ndjson.part`, `<class>.ndjson.lock`;
    neither ends in `.ndjson` or `.ndjson.gz`, which the pipeline reads."""
    for suffix in (http_fetch.PART, http_fetch.LOCK):
        name = "cat.ndjson" + suffix
        assert name in ("cat.ndjson.part", "cat.ndjson.lock")
        assert not name.endswith((".ndjson", ".ndjson.gz"))
