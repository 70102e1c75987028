"""Keeps TensorFlow's C++ log lines off the terminal unless asked for (TFDIFFGAN_TF_LOGS=1).

TensorFlow 2.21 writes its start-up notices (oneDNN, "Could not find cuda drivers") through absl's
C++ logging before it reads TF_CPP_MIN_LOG_LEVEL, so no setting hides them: only pointing file
descriptor 2 elsewhere while ``tensorflow`` is first imported does. TF_CPP_MIN_LOG_LEVEL=3 then
hides the run-time ERROR lines that report nothing wrong (cuInit on a CPU machine, grappler's
"remapper failed"). Real failures still reach the user: as Python exceptions, and an import that
fails replays everything it wrote. ``tfdiffgan/__init__.py`` installs the hook, so whatever
imports tfdiffgan before TensorFlow (the binaries, the set-up, the tests) gets it.
"""

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

ENV = "TFDIFFGAN_TF_LOGS"

# absl / TSL C++ log lines ("I0000 00:00:1795812591.526942  4422 port.cc:153] ...", the older
# "2025-01-01 12:00:00.123: I tensorflow/...:12] ...") and absl's pre-initialization banner.
_CPP_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
                       r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\] "
                       r"|WARNING: All log messages before absl::InitializeLog\(\) is called")


def wanted():
  """True when the user asked for TensorFlow's own log lines."""
  return os.environ.get(ENV, "") not in ("", "0")


def drop_cpp_lines(text):
  return "".join(line for line in text.splitlines(keepends=True) if not _CPP_LINE.match(line))


def _exec_quietly(loader, module):
  """Runs loader.exec_module(module) with fd 2 in a temporary file; writes back what is not a C++
  log line (Python warnings), or everything if the import fails."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    failed = True
    try:
      loader.exec_module(module)
      failed = False
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      text = tmp.read().decode(errors="replace")
      text = text if failed else drop_cpp_lines(text)
      if text:
        sys.stderr.write(text)
        sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
  """Wraps tensorflow's own loader for its first import only."""

  def __init__(self, inner):
    self._inner = inner

  def create_module(self, spec):
    return self._inner.create_module(spec)

  def exec_module(self, module):
    try:
      if wanted():  # decided now, so a binary can set ENV from its flags before importing TF
        self._inner.exec_module(module)
      else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # a level the user set is kept
        _exec_quietly(self._inner, module)
    finally:
      module.__loader__ = module.__spec__.loader = self._inner


class _TensorFlowFinder(importlib.abc.MetaPathFinder):

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name != "tensorflow":
      return None
    uninstall()
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def install():
  """Makes the first ``import tensorflow`` quiet (no-op if TensorFlow is already imported)."""
  if "tensorflow" not in sys.modules and not any(
      isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _TensorFlowFinder())


def uninstall():
  sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TensorFlowFinder)]
