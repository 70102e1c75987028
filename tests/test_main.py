"""The binaries as a user meets them: --version, --help, and an installed wheel run from elsewhere."""

import functools
import glob
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, make_idx_dir
import tfdiffgan
from tfdiffgan import tflogs

pytestmark = pytest.mark.e2e

PROGRAMS = ("train", "evaluate", "generate", "reproduce")
TINY = ["--config.model.width=0.125", "--config.model.d_width=0", "--config.data.batch_size=16",
        "--config.train.iterations=2", "--config.train.n_d=1", "--config.eval.final_samples=0",
        "--config.eval.eval_every=0",
        "--config.train.lr_decay=0"]  # the run is extended below: only a constant mu resumes so


def _run(cmd, **kwargs):
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


@functools.lru_cache(maxsize=None)
def _bin(program, flag):
  """bin/PROGRAM FLAG run once for the tests that read its output (each launch imports
  TensorFlow)."""
  return _run([sys.executable, os.path.join(ROOT, "bin", program), flag], cwd=ROOT)


@pytest.mark.parametrize("program", PROGRAMS)
def test_version(program):
  r = _run([sys.executable, os.path.join(ROOT, "bin", program), "--version"], cwd=ROOT)
  assert r.returncode == 0 and r.stdout == f"tfdiffgan {tfdiffgan.__version__}\n", r.stderr


@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_help_is_a_success(program, flag):
  r = _bin(program, flag)
  assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
  assert "--[no]version:" in r.stdout and not r.stderr.strip(), r.stderr[-2000:]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_launch_help_is_a_success(flag):
  r = _run([sys.executable, os.path.join(ROOT, "bin", "launch"), flag], cwd=ROOT)
  assert r.returncode == 0 and r.stdout.startswith("Launcher: N worker processes"), r.stderr
  assert "usage: bin/launch --workers=N -- bin/train" in r.stdout and not r.stderr


def test_launch_version():
  r = _run([sys.executable, os.path.join(ROOT, "bin", "launch"), "--version"], cwd=ROOT)
  assert r.returncode == 0 and r.stdout == f"tfdiffgan {tfdiffgan.__version__}\n", r.stderr


def test_train_help_shows_its_flags_and_the_config_fields():
  r = _bin("train", "--help")
  for text in ("--config:", "--workdir:", "--[no]version:", "train.iterations = 700",
               'topology.graph = "paper5"', "eval.final_samples = 10000"):
    assert text in r.stdout, text
  assert "--logtostderr" not in r.stdout and "--helpfull" in r.stdout  # absl's own: --helpfull


def test_installed_wheel_trains_from_an_unrelated_directory(tmp_path):
  """pip wheel + pip install --target, then the console script from elsewhere: no checkout on
  sys.path, a config file outside the repository, and no TensorFlow C++ lines on stderr."""
  src = tmp_path / "src"  # a copy, so that the build leaves nothing (build/) in the checkout
  shutil.copy(os.path.join(ROOT, "setup.py"), src.mkdir() or src)
  shutil.copytree(os.path.join(ROOT, "tfdiffgan"), src / "tfdiffgan",
                  ignore=shutil.ignore_patterns("__pycache__"))
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
  r = _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                  str(src)])
  assert r.returncode == 0, r.stderr[-3000:]
  (wheel,) = glob.glob(str(tmp_path / "dist" / "tfdiffgan-*.whl"))
  target = str(tmp_path / "site")
  r = _run(pip + ["install", "--no-deps", f"--target={target}", wheel])
  assert r.returncode == 0, r.stderr[-3000:]
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  shutil.copy(os.path.join(ROOT, "configs", "mnist_noniid.py"), elsewhere / "my_config.py")
  make_idx_dir(str(elsewhere / "idx"))
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", tflogs.ENV)}
  env["PYTHONPATH"] = target

  # the wheel's copy is the one imported, and its default reproduce grid is found from here
  # the wheel's copy is imported; the config and the default grid load without configs/
  for program, args, field, value in (("train", "'--config=my_config.py', '--workdir=w'",
                                       "data.partition", "classes"),
                                      ("reproduce", "'--results_dir=r'", "datasets[1]",
                                       "fashion_mnist")):
    probe = (f"import sys, tfdiffgan; from absl import flags; from tfdiffgan.main import {program};"
             f"flags.FLAGS(['x', {args}]);"
             f"print(tfdiffgan.__file__, flags.FLAGS.config.{field}, 'configs' in sys.modules)")
    r = _run([sys.executable, "-c", probe], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [os.path.join(target, "tfdiffgan", "__init__.py"), value, "False"]
  version = os.path.basename(wheel).split("-")[1]
  for name in PROGRAMS:
    r = _run([os.path.join(target, "bin", f"tfdiffgan-{name}"), "--version"], cwd=elsewhere, env=env)
    assert r.stdout == f"tfdiffgan {version}\n", r.stderr[-2000:]

  r = _run([os.path.join(target, "bin", "tfdiffgan-train"), "--config=my_config.py",
            "--workdir=run", f"--config.data.source_dir={elsewhere / 'idx'}", *TINY],
           cwd=elsewhere, env=env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "iter 2/2" in r.stdout and (elsewhere / "run" / "export" / "agent_4").is_dir()
  assert r.stderr == "", r.stderr[-3000:]  # no cuInit / oneDNN / cuda drivers / remapper lines
  r = _run([sys.executable, "-m", "tfdiffgan.train", "--config=my_config.py", "--workdir=run",
            f"--config.data.source_dir={elsewhere / 'idx'}", *TINY, "--config.train.iterations=3"],
           cwd=elsewhere, env=env)
  assert r.returncode == 0 and "iter 3/3" in r.stdout, r.stderr[-3000:]  # resumed
