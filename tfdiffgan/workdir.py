"""The workdir of a run: one live run per workdir, atomic writes, clean resumes, clear disk errors.

Kept apart from the trainer so that every writer (the trainer, each worker of a multi-worker run,
bin/reproduce) takes the same lock and reports a full disk the same way.
"""

import contextlib
import errno
import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import sys

from tfdiffgan import files
from tfdiffgan.errors import Interrupted  # pylint: disable=unused-import  (workdir.Interrupted)
from tfdiffgan.errors import WorkdirError

LOCK_NAME = ".lock"
TIMES_NAME = "train_seconds.json"  # under checkpoints/: cumulative training time per checkpoint
# errnos that mean "the workdir cannot take this write", not "the program has a bug"
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EISDIR, errno.EEXIST, errno.EFBIG)


def prepare(workdir):
  """Creates the workdir (and its parents) or says why it cannot be used."""
  if not workdir:
    raise WorkdirError("--workdir is empty; give a directory for the run (it is created if missing).")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} is a regular file, not a directory; give a directory "
                       "path (it is created if missing), or move the file away.")
  parent = os.path.dirname(os.path.abspath(workdir))
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if parent and not os.path.isdir(parent):
    raise WorkdirError(f"--workdir={workdir} lies under {parent}, which is a regular file; choose a "
                       "path under a directory.")
  try:
    os.makedirs(workdir, exist_ok=True)
    # one name per process: the workers of a multiworker run prepare the same workdir at once,
    # and a shared name let one remove the probe of another (FileNotFoundError)
    probe = os.path.join(workdir, f".write_probe.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise disk_error(e, workdir, "create the workdir") from e
  return workdir


def first_missing(workdir):
  """The outermost directory of ``workdir``'s path that does not exist yet (None if it does)."""
  path, missing = os.path.abspath(workdir), None
  while path and not os.path.exists(path):
    path, missing = os.path.dirname(path), path
  return missing


def remove_if_unused(workdir, created):
  """Removes a workdir that holds nothing but lock files (a run that failed at start-up), and
  the parents ``prepare`` made for it up to ``created``, when they are empty."""
  try:
    if not all(name.startswith(LOCK_NAME) for name in os.listdir(workdir)):
      return
    shutil.rmtree(workdir, ignore_errors=True)
    path = os.path.dirname(os.path.abspath(workdir))
    while len(path) >= len(created) and os.path.isdir(path) and not os.listdir(path):
      os.rmdir(path)
      path = os.path.dirname(path)
  except OSError:
    pass


def disk_error(e, path, doing):
  """A WorkdirError naming the path, what failed and what to do, from an OSError or a
  TensorFlow file-system error (tf.errors.ResourceExhaustedError: No space left on device)."""
  text = getattr(e, "strerror", None) or str(e).strip().splitlines()[0][:300]
  no = getattr(e, "errno", None)
  if no in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e) or "quota" in str(e).lower():
    fix = "free disk space (or choose a --workdir on another disk) and rerun the same command"
  elif no in (errno.EACCES, errno.EPERM, errno.EROFS) or "ermission" in str(e) or "ead-only" in str(e):
    fix = "make it writable (or choose another --workdir) and rerun the same command"
  else:
    fix = "fix the path (or choose another --workdir) and rerun the same command"
  where = getattr(e, "filename", None) or path
  return WorkdirError(f"cannot {doing} at {where}: {text}. Nothing saved before was lost; {fix}.")


def is_disk_error(e):
  """True for the errors of a workdir that cannot take a write (full, read-only, not a dir)."""
  if isinstance(e, OSError):
    return e.errno in DISK_ERRNOS
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return isinstance(e, (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError)) or (
      isinstance(e, tf.errors.OpError) and ("No space left" in str(e) or "Read-only" in str(e)))


@contextlib.contextmanager
def disk_errors(workdir, doing="write"):
  """Turns a full, read-only or vanished workdir into one WorkdirError; other errors pass."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, WorkdirError) or not is_disk_error(e):
      raise
    raise disk_error(e, workdir, doing) from e


# --------------------------------------------------------------------------------------- lock


class Lock:
  """An exclusive flock on WORKDIR/NAME: released when closed or when the process dies (even by
  kill -9), so it never goes stale. The file names its holder."""

  def __init__(self, path, handle):
    self.path, self._handle = path, handle

  def release(self):
    if self._handle is not None:
      fcntl.flock(self._handle, fcntl.LOCK_UN)
      self._handle.close()
      self._handle = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def lock(workdir, name=LOCK_NAME):
  """Takes the workdir's lock (one per worker with distinct names) or raises WorkdirError naming
  the process that holds it."""
  path = os.path.join(workdir, name)
  try:
    handle = open(path, "a+")
  except OSError as e:
    raise disk_error(e, path, "create the lock file") from e
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    handle.seek(0)
    holder = handle.read().strip() or "another process"
    handle.close()
    raise WorkdirError(f"{workdir} is in use by a running training ({holder}); a workdir holds one "
                       "live run. Wait for it to finish, stop it, or use another --workdir.")
  handle.seek(0)
  handle.truncate()
  handle.write(f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:200]}\n")
  handle.flush()
  return Lock(path, handle)


# ----------------------------------------------------------------------------------- logs


def truncate_jsonl(path, iteration, keep_last=True):
  """Drops the rows of a JSONL log past ``iteration`` (and at it, unless keep_last): a resumed
  run redoes them, so they would otherwise appear twice."""
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = [l for l in f if l.strip()]
  keep = [l for l in lines if json.loads(l).get("iteration", 0) < iteration + int(keep_last)]
  if len(keep) != len(lines):
    files.write_text(path, "".join(keep))
  return len(lines) - len(keep)


def finished_record(workdir, start, total):
  """The saved run.json when the workdir already holds this finished run (so a rerun changes
  nothing), else None."""
  path = os.path.join(workdir, "run.json")
  if start < total or not os.path.exists(path):
    return None
  with open(path) as f:
    record = json.load(f)
  return record if record.get("iterations") == start else None


def resume_records(workdir, start, total):
  """Before (re)starting at iteration ``start``: drops log and metrics rows that the run will
  write again, and the debris of a save that was cut short."""
  truncate_jsonl(os.path.join(workdir, "log.jsonl"), start)
  # the final evaluation (at ``total``) is redone when the run stopped before writing run.json
  truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), start, keep_last=start < total)
  clean_partial_checkpoints(os.path.join(workdir, "checkpoints"))


# --------------------------------------------------------------------------- checkpoints


def clean_partial_checkpoints(checkpoint_dir):
  """Removes what an interrupted save leaves behind (ckpt-N_temp/, checkpoint.tmp*)."""
  removed = []
  for path in glob.glob(os.path.join(checkpoint_dir, "*_temp*")) + glob.glob(
      os.path.join(checkpoint_dir, "checkpoint.tmp*")):
    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    removed.append(path)
  return removed


def save_checkpoint(manager, number):
  """manager.save(number), turning a full or read-only disk into a WorkdirError that names the
  last intact checkpoint; a half-written ckpt-N_temp/ is removed."""
  previous = manager.latest_checkpoint
  try:
    return manager.save(checkpoint_number=number)
  except Exception as e:  # pylint: disable=broad-except
    if not is_disk_error(e):
      raise
    clean_partial_checkpoints(manager.directory)
    kept = (f"The last checkpoint ({os.path.basename(previous)}) is intact"
            if previous else "No checkpoint had been written yet")
    raise WorkdirError(
        f"cannot write checkpoint ckpt-{number} in {manager.directory}: "
        f"{str(e).strip().splitlines()[0][:300]}. {kept}; free disk space or make the workdir "
        "writable, then rerun the same command to resume.") from e


def session_seconds(checkpoint_dir, iteration):
  """Training seconds of earlier sessions up to the checkpoint at ``iteration`` (0 if unknown)."""
  path = os.path.join(checkpoint_dir, TIMES_NAME)
  if not iteration or not os.path.exists(path):
    return 0.0
  with open(path) as f:
    return float(json.load(f).get(str(iteration), 0.0))


def record_seconds(checkpoint_dir, iteration, seconds):
  """Remembers the cumulative training time at a checkpoint, so a resumed run adds to it."""
  path = os.path.join(checkpoint_dir, TIMES_NAME)
  times = {}
  if os.path.exists(path):
    with open(path) as f:
      times = json.load(f)
  times[str(iteration)] = seconds
  files.write_json(path, times)


# ------------------------------------------------------------------------------- signals


class StopOnSignal:
  """Turns the first SIGINT/SIGTERM into a request the loop polls between iterations (so the
  checkpoint holds a whole iteration); a second one interrupts at once."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.received = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def __enter__(self):
    try:
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    except ValueError:  # not the main thread: signals stay as they were
      self._previous = {}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
