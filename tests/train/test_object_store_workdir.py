"""A run whose workdir is a bucket (gs://), offline: through segjax.paths on tests/fake_bucket.py.

The fake is fsspec's memory filesystem under the gs protocol (what etils.epath
reaches through gcsfs), with no appends and GCS's generation preconditions.
Orbax's own gs:// writes go through tensorstore's gcs driver (network), so its
checkpoints land in a local mirror of the same keys (`fake_bucket.install`).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from segjax import checkpoints, paths
from segjax.train import loop
from segjax.train.logging import (METRICS_FILE, TENSORBOARD_DIR, MetricWriter, read_metrics,
                                  read_tensorboard_scalars)
from segjax.train.workdir import LOCK_FILE, WorkdirBusy, WorkdirLock
from tests import fake_bucket
from tests.train.conftest import tiny_config

WORKDIR = "gs://bucket/runs/tiny"


@pytest.fixture
def bucket(monkeypatch, tmp_path):
    fake = fake_bucket.install(monkeypatch, tmp_path / "orbax-mirror")
    yield fake
    fake_bucket.clear_epath_cache()


def _keys(fake, prefix: str = "bucket/runs/tiny/") -> set[str]:
    return {key[len(prefix):] for key in fake.store if key.startswith(prefix)}


def _lease(fake, uri: str = f"{WORKDIR}/{LOCK_FILE}") -> dict:
    return json.loads(fake.read(uri)[0])


# ------------------------------------------------------------------ the path layer

def test_the_path_layer_keeps_local_paths_and_does_not_resolve_uris(tmp_path):
    assert paths.workdir_path(tmp_path / "a" / ".." / "b") == tmp_path / "b"
    remote = paths.workdir_path(WORKDIR)
    assert str(remote / "config.json") == f"{WORKDIR}/config.json"
    assert not paths.is_local(remote) and paths.is_local(tmp_path)


def test_write_text_replaces_a_local_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    paths.write_text(target, "new\n")
    assert target.read_text() == "new\n" and sorted(tmp_path.iterdir()) == [target]


def test_check_writable_in_a_bucket_writes_and_deletes_one_probe(bucket):
    paths.check_writable(WORKDIR, f"{WORKDIR}/checkpoints")
    assert bucket.store == {}


def test_check_writable_names_a_bucket_that_refuses_writes(bucket, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "403 Forbidden")
    monkeypatch.setattr(type(bucket), "_open", refuse)
    with pytest.raises(PermissionError, match=rf"cannot write in {WORKDIR} \(403 Forbidden\); "
                                              "checkpoints and logs go there"):
        paths.check_writable(WORKDIR)


def test_metrics_in_a_bucket_are_rewritten_whole_and_resume_drops_replayed_steps(bucket):
    with MetricWriter(WORKDIR, console=False) as writer:
        writer.write_scalars(1, {"train/loss": 2.0})
        writer.write_scalars(2, {"train/loss": 3.0})
        assert [r["step"] for r in read_metrics(f"{WORKDIR}/{METRICS_FILE}")] == [1, 2]
        # Copied up at each flush (what tensorboardX's writer thread has written by then).
        assert any(key.startswith(f"{TENSORBOARD_DIR}/events.out") for key in _keys(bucket))
    assert read_tensorboard_scalars(f"{WORKDIR}/{TENSORBOARD_DIR}")["train/loss"] == [
        (1, 2.0), (2, 3.0)]  # all of it at close
    with MetricWriter(WORKDIR, console=False, resume_step=1) as writer:
        writer.write_scalars(2, {"train/loss": 1.5})
    records = read_metrics(WORKDIR)
    assert [(r["step"], r["train/loss"]) for r in records] == [(1, 2.0), (2, 1.5)]
    events = [key for key in _keys(bucket) if key.startswith(f"{TENSORBOARD_DIR}/events.out")]
    assert len(events) == 2  # one event file per writer, copied up whole; none replaced
    assert sorted(read_tensorboard_scalars(f"{WORKDIR}/{TENSORBOARD_DIR}")["train/loss"]) == [
        (1, 2.0), (2, 1.5), (2, 3.0)]


def test_an_object_store_cannot_append_so_metrics_never_open_for_append(bucket):
    with pytest.raises(OSError, match="cannot append"):
        with paths.as_path(f"{WORKDIR}/{METRICS_FILE}").open("a") as stream:
            stream.write("{}\n")


def test_move_and_remove_a_tree_in_a_bucket(bucket):
    for key in ("checkpoints/7/state/a", "checkpoints/7/meta/b", "checkpoints/8/state/a"):
        bucket.pipe_file(f"bucket/runs/tiny/{key}", key.encode())
    workdir = paths.as_path(WORKDIR)
    paths.move_tree(workdir / "checkpoints" / "7", workdir / "checkpoints_corrupt" / "7")
    assert _keys(bucket) == {"checkpoints/8/state/a", "checkpoints_corrupt/7/state/a",
                             "checkpoints_corrupt/7/meta/b"}
    assert bucket.cat_file("bucket/runs/tiny/checkpoints_corrupt/7/meta/b") == \
        b"checkpoints/7/meta/b"
    paths.remove_tree(workdir / "checkpoints_corrupt")
    assert _keys(bucket) == {"checkpoints/8/state/a"}


# ------------------------------------------------------------------ the lease lock

def test_a_lease_refuses_a_second_holder_naming_the_first_and_is_released(bucket):
    with WorkdirLock(WORKDIR) as held:
        lease = _lease(bucket)
        assert lease["pid"] > 0 and lease["expires"] > time.time() + 60
        with pytest.raises(WorkdirBusy, match=rf"workdir {WORKDIR} is in use by another run: "
                                              rf".*\"pid\": {lease['pid']}.*use another --workdir"):
            WorkdirLock(WORKDIR).__enter__()
        assert held.path == paths.as_path(WORKDIR) / LOCK_FILE
    assert f"{LOCK_FILE}" not in _keys(bucket)


def test_the_heartbeat_extends_the_lease(bucket):
    with WorkdirLock(WORKDIR, lease_seconds=30, refresh_seconds=0.05):
        first = bucket.read(f"{WORKDIR}/{LOCK_FILE}")
        time.sleep(0.3)
        later = bucket.read(f"{WORKDIR}/{LOCK_FILE}")
        assert later[1] > first[1]
        assert json.loads(later[0])["expires"] > json.loads(first[0])["expires"]


def _dead_holder(bucket, seconds_ago: float = 5.0) -> int:
    record = {"host": "tpu-vm-7", "pid": 4242, "started": "2026-01-01T00:00:00",
              "command": "segjax.main", "expires": time.time() - seconds_ago}
    return bucket.write(f"{WORKDIR}/{LOCK_FILE}", json.dumps(record).encode(),
                        if_generation_match=0)


def test_an_expired_lease_is_taken_over(bucket):
    _dead_holder(bucket)
    with WorkdirLock(WORKDIR):
        assert _lease(bucket)["host"] != "tpu-vm-7" or _lease(bucket)["pid"] != 4242
        assert _lease(bucket)["expires"] > time.time()


def test_a_holder_whose_lease_was_taken_over_stops_and_leaves_the_new_lease(bucket, capsys):
    uri = f"{WORKDIR}/{LOCK_FILE}"
    lock = WorkdirLock(WORKDIR, lease_seconds=30, refresh_seconds=0.05).__enter__()
    # What a run does with a lease whose holder stalled past its expiry: compare-and-swap.
    taker = json.dumps({"pid": 7, "expires": time.time() + 30}).encode()
    taken = bucket.write(uri, taker, if_generation_match=bucket.read(uri)[1])
    time.sleep(0.3)  # the holder's next refresh fails its precondition
    assert "was taken over by another run" in capsys.readouterr().err
    with pytest.raises(WorkdirBusy, match=r'taken over by another run .*"pid": 7.*Stopped before'):
        lock.check()
    lock.__exit__(None, None, None)
    assert bucket.read(uri) == (taker, taken)  # neither refreshed nor deleted


def test_check_reads_the_lease_back_between_refreshes(bucket):
    uri = f"{WORKDIR}/{LOCK_FILE}"
    with WorkdirLock(WORKDIR) as lock:
        lock.check()  # still its own
        bucket.write(uri, b'{"pid": 7}', if_generation_match=bucket.read(uri)[1])
        with pytest.raises(WorkdirBusy, match='"pid": 7'):
            lock.check()


def test_a_lease_shorter_than_its_refresh_is_refused():
    with pytest.raises(ValueError, match="refresh_seconds=60 must be positive and less than "
                                         "lease_seconds=30"):
        WorkdirLock(WORKDIR, lease_seconds=30, refresh_seconds=60)


def _race(count: int) -> tuple[list, list]:
    """`count` threads take the lock at once; (holders, refusals)."""
    barrier, holders, refused = threading.Barrier(count), [], []

    def take():
        lock = WorkdirLock(WORKDIR, refresh_seconds=60)
        barrier.wait()
        try:
            holders.append(lock.__enter__())
        except WorkdirBusy as error:
            refused.append(error)
    threads = [threading.Thread(target=take) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return holders, refused


@pytest.mark.parametrize("expired_lease", [False, True])
def test_racing_runs_produce_exactly_one_holder(bucket, expired_lease):
    if expired_lease:
        _dead_holder(bucket)
    for _ in range(5):
        holders, refused = _race(6)
        assert len(holders) == 1 and len(refused) == 5
        holders[0].__exit__(None, None, None)
        if expired_lease:
            _dead_holder(bucket)


def test_a_lease_takeover_replaces_only_the_generation_it_read(bucket):
    """Two runs read the same expired lease; the second's compare-and-swap fails: busy."""
    seen = _dead_holder(bucket)
    first = bucket.write(f"{WORKDIR}/{LOCK_FILE}", b'{"expires": 1e12, "pid": 1}',
                         if_generation_match=seen)
    with pytest.raises(paths.PreconditionFailed):
        bucket.write(f"{WORKDIR}/{LOCK_FILE}", b"{}", if_generation_match=seen)
    with pytest.raises(WorkdirBusy, match='"pid": 1'):
        WorkdirLock(WORKDIR).__enter__()
    assert bucket.read(f"{WORKDIR}/{LOCK_FILE}")[1] == first


# ------------------------------------------------------------------ a training run

def test_a_run_whose_lease_is_taken_over_stops_before_its_next_checkpoint(bucket, tmp_path):
    uri = f"{WORKDIR}/{LOCK_FILE}"

    def steal(step, state):
        if step == 1:
            bucket.write(uri, b'{"pid": 7}', if_generation_match=bucket.read(uri)[1])
    with pytest.raises(WorkdirBusy, match='taken over by another run.*"pid": 7'):
        loop.train_and_evaluate(tiny_config(train__steps=2, train__checkpoint_every=2,
                                            data__val_split=""), WORKDIR, hooks=[steal])
    mirror = tmp_path / "orbax-mirror" / "bucket" / "runs" / "tiny"
    assert not (mirror / checkpoints.CHECKPOINTS_DIR / "2").exists()
    assert bucket.read(uri)[0] == b'{"pid": 7}'  # the new holder's lease is left alone


def test_a_run_in_a_bucket_writes_everything_there_and_resumes(bucket, tmp_path, capsys):
    config = tiny_config(train__steps=2, train__log_every=1, train__eval_every=2)
    loop.train_and_evaluate(config, WORKDIR)
    written = _keys(bucket)
    assert {checkpoints.CONFIG_FILE, "splits.json", METRICS_FILE, loop.EVAL_FILE} <= written
    assert any(key.startswith(f"{TENSORBOARD_DIR}/events.out.tfevents.") for key in written)
    assert any(key.startswith(f"{loop.PREDICTIONS_DIR}/") and key.endswith(".png")
               for key in written)
    assert LOCK_FILE not in written  # released
    mirror = tmp_path / "orbax-mirror" / "bucket" / "runs" / "tiny"
    assert (mirror / checkpoints.CHECKPOINTS_DIR / "2").is_dir()
    assert (mirror / checkpoints.BEST_DIR / checkpoints.BEST_FILE).is_dir()
    assert json.loads(bucket.cat_file(f"bucket/runs/tiny/{checkpoints.CONFIG_FILE}"))[
        "train"]["steps"] == 2

    capsys.readouterr()
    loop.train_and_evaluate(tiny_config(train__steps=4, train__log_every=1,
                                        train__eval_every=2), WORKDIR)
    assert "resumed at step 2" in capsys.readouterr().out
    assert (mirror / checkpoints.CHECKPOINTS_DIR / "4").is_dir()
    assert [record["step"] for record in read_metrics(WORKDIR)
            if "train/loss" in record] == [1, 2, 3, 4]
    assert json.loads(bucket.cat_file(f"bucket/runs/tiny/{loop.EVAL_FILE}"))["step"] == 4
