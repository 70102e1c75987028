"""The workdir: one live run per workdir, unusable paths named, log rows cut on resume, disk errors."""

import errno
import json
import os
import signal

import pytest
import tensorflow as tf

from tfdiffgan import workdir as workdir_lib
from tfdiffgan.workdir import WorkdirError


def test_lock_is_exclusive_names_the_holder_and_is_released(tmp_path):
  first = workdir_lib.lock(str(tmp_path))
  with pytest.raises(WorkdirError, match=rf"in use by a running training \(pid {os.getpid()} "):
    workdir_lib.lock(str(tmp_path))
  # one lock per worker: another name is another lock
  workdir_lib.lock(str(tmp_path), name=".lock.worker1").release()
  first.release()
  with workdir_lib.lock(str(tmp_path)):
    pass


def test_unusable_workdirs_are_named(tmp_path, monkeypatch):
  regular = tmp_path / "file"
  regular.write_text("x")
  with pytest.raises(WorkdirError, match=r"is a regular file, not a directory"):
    workdir_lib.prepare(str(regular))
  with pytest.raises(WorkdirError, match=rf"lies under {regular}, which is a regular file"):
    workdir_lib.prepare(str(regular / "run"))
  real_makedirs = os.makedirs

  def read_only(path, *args, **kwargs):
    if str(path).startswith(str(tmp_path / "ro")):
      raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_makedirs(path, *args, **kwargs)

  monkeypatch.setattr(os, "makedirs", read_only)  # root ignores file modes: simulate
  with pytest.raises(WorkdirError, match=r"cannot create the workdir at .*ro/run: Permission "
                                         r"denied.*make it writable"):
    workdir_lib.prepare(str(tmp_path / "ro" / "run"))
  assert workdir_lib.prepare(str(tmp_path / "ok" / "run")) and (tmp_path / "ok" / "run").is_dir()


def test_disk_errors_become_one_message_and_bugs_pass(tmp_path):
  with pytest.raises(WorkdirError, match=r"cannot write at .*: No space left on device\. Nothing "
                                         r"saved before was lost; free disk space"):
    with workdir_lib.disk_errors(str(tmp_path)):
      raise OSError(errno.ENOSPC, "No space left on device")
  with pytest.raises(WorkdirError, match="No space left"):
    with workdir_lib.disk_errors(str(tmp_path)):
      raise tf.errors.ResourceExhaustedError(None, None, "x_temp/part-0; No space left on device")
  with pytest.raises(ValueError, match="a bug"):  # not a disk error: keeps its traceback
    with workdir_lib.disk_errors(str(tmp_path)):
      raise ValueError("a bug")


def test_truncate_jsonl_drops_rows_past_the_restored_iteration(tmp_path):
  path = str(tmp_path / "log.jsonl")
  with open(path, "w") as f:
    for i in (1, 2, 3, 4, 5):
      f.write(json.dumps({"iteration": i}) + "\n")
  assert workdir_lib.truncate_jsonl(path, 3) == 2
  assert [json.loads(l)["iteration"] for l in open(path)] == [1, 2, 3]
  assert workdir_lib.truncate_jsonl(path, 3, keep_last=False) == 1
  assert workdir_lib.truncate_jsonl(str(tmp_path / "missing.jsonl"), 3) == 0


def test_partial_checkpoint_debris_is_removed(tmp_path):
  (tmp_path / "ckpt-4_temp").mkdir()
  (tmp_path / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
  (tmp_path / "checkpoint.tmp1234").write_text("x")
  (tmp_path / "ckpt-2.index").write_text("kept")
  assert len(workdir_lib.clean_partial_checkpoints(str(tmp_path))) == 2
  assert sorted(os.listdir(tmp_path)) == ["ckpt-2.index"]


def test_session_seconds_accumulate(tmp_path):
  workdir_lib.record_seconds(str(tmp_path), 2, 10.5)
  workdir_lib.record_seconds(str(tmp_path), 4, 21.0)
  assert workdir_lib.session_seconds(str(tmp_path), 4) == 21.0
  assert workdir_lib.session_seconds(str(tmp_path), 0) == 0.0


def test_first_signal_is_a_request_the_second_interrupts():
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job's shell ignores it
    signal.signal(signal.SIGINT, signal.default_int_handler)
  before = signal.getsignal(signal.SIGINT)
  with workdir_lib.StopOnSignal() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.received == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is before  # the handler before is back
