"""TensorFlow's C++ log lines are hidden on import unless asked for; anything else gets through."""

import os
import subprocess
import sys

import pytest

from tfdiffgan import tflogs

CPP = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
       "I0000 00:00:1795812591.526942    4422 port.cc:153] oneDNN custom operations are on.\n"
       "E0000 00:00:1795812317.813469    3097 cuda_platform.cc:52] failed call to cuInit\n"
       "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not\n")
PY = "/x/y.py:3: UserWarning: something the user should see\n"


class _Loader:
  """Writes C++-looking and Python lines straight to fd 2, as TensorFlow's import does."""

  def __init__(self, fail):
    self.fail = fail

  def exec_module(self, module):
    del module
    os.write(2, (CPP + PY).encode())
    if self.fail:
      raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")


def test_import_output_keeps_only_non_cpp_lines(capfd):
  tflogs._exec_quietly(_Loader(fail=False), None)  # pylint: disable=protected-access
  assert capfd.readouterr().err == PY


def test_failed_import_replays_everything(capfd):
  try:
    tflogs._exec_quietly(_Loader(fail=True), None)  # pylint: disable=protected-access
  except ImportError as e:
    assert "cannot open shared object" in str(e)
  else:
    raise AssertionError("the import error was swallowed")
  assert capfd.readouterr().err == CPP + PY


def _import_tensorflow(tmp_path, **env):
  env = dict({k: v for k, v in os.environ.items()
              if k not in ("TF_CPP_MIN_LOG_LEVEL", tflogs.ENV)}, **env)
  code = "import os, tfdiffgan, tensorflow as tf; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        cwd=tmp_path, timeout=300, check=True)


@pytest.mark.e2e
def test_tensorflow_imports_quietly_after_tfdiffgan_unless_asked(tmp_path):
  quiet = _import_tensorflow(tmp_path)
  assert quiet.stderr == "" and quiet.stdout.strip() == "3"
  loud = _import_tensorflow(tmp_path, TFDIFFGAN_TF_LOGS="1")
  cpp_line = tflogs._CPP_LINE  # pylint: disable=protected-access
  assert any(cpp_line.match(line) for line in loud.stderr.splitlines()), loud.stderr
  assert loud.stdout.strip() == "None"
  # a level the user set is kept (it governs the run-time lines)
  assert _import_tensorflow(tmp_path, TF_CPP_MIN_LOG_LEVEL="1").stdout.strip() == "1"
