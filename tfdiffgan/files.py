"""Writing the run's records so that a crash leaves the old file or the new, never half of one."""

import json
import os


def write_text(path, text):
  """Writes ``text`` through a temporary file beside ``path`` and a rename (atomic on POSIX)."""
  write_bytes(path, text.encode())


def copy_file(src, dst):
  """Copies ``src`` to ``dst`` atomically (see ``write_text``)."""
  with open(src, "rb") as f:
    write_bytes(dst, f.read())


def write_bytes(path, data):
  """Writes ``data`` through a temporary file beside ``path`` and a rename (atomic on POSIX)."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path, obj, indent=2):
  """Writes ``obj`` as JSON, atomically (see ``write_text``)."""
  write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path, default=None):
  """The JSON in ``path``, or ``default`` when there is no such file."""
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


def append_jsonl(path, obj):
  """Appends one record as a line (the run's curves: log.jsonl, metrics.jsonl)."""
  with open(path, "a") as f:
    f.write(json.dumps(obj) + "\n")
