"""Config files and config checks: every config loads from any directory (the defaults come
from the package, not configs/); each module refuses a bad field of its own part with one line;
a resume that would train something else is refused and leaves the saved run as it was."""

import glob
import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_config
from tfdiffgan import config as config_lib
from tfdiffgan import data, models, optim, placement
from tfdiffgan.configs import default
from tfdiffgan.errors import ConfigError, DataError, PlacementError

LOAD = """
import importlib.util, json, sys
sys.modules["configs"] = None  # the checkout's configs/ package cannot be imported, as when installed
out = {}
for path in sys.argv[1:]:
  spec = importlib.util.spec_from_file_location("cfg", path)  # as ml_collections loads --config
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  out[path.rsplit("/", 1)[-1]] = json.loads(module.get_config().to_json())
print(json.dumps(out))
"""


@pytest.mark.e2e
def test_every_config_loads_from_an_unrelated_directory(tmp_path):
  paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
  paths = [p for p in paths if not p.endswith("__init__.py")]
  r = subprocess.run([sys.executable, "-c", LOAD, *paths], capture_output=True, text=True,
                     cwd=tmp_path, timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]
  loaded = json.loads(r.stdout)
  assert len(loaded) == len(paths) >= 7
  from tfdiffgan.configs import default, reproduce  # pylint: disable=g-import-not-at-top
  assert loaded["mnist_iid.py"] == json.loads(default.get_config().to_json())
  assert loaded["reproduce.py"] == json.loads(reproduce.get_config().to_json())
  assert loaded["mnist_noniid.py"]["data"]["partition"] == "classes"
  assert loaded["paper_fashion.py"]["data"]["name"] == "fashion_mnist"
  assert loaded["paper_fashion.py"]["model"] == loaded["paper_mnist.py"]["model"]
  assert loaded["paper_mnist.py"]["model"]["width"] == 1.0


def _config(**overrides):
  return tiny_config("", **overrides)


@pytest.mark.parametrize("overrides, module, match", [
    ({"data.name": "cifar"}, data, r"data.name='cifar' is not one of \('mnist', 'fashion_mnist'\)"),
    ({"data.partition": "shards"}, data, "data.partition='shards' is not one of"),
    ({"data.batch_size": 0}, data, "data.batch_size=0 must be a positive integer"),
    ({"data.partition": "dirichlet", "data.dirichlet_alpha": 0.0}, data,
     "data.dirichlet_alpha=0.0 must be a positive number"),
    ({"data.partition": "classes", "data.classes": [[0, 1], []]}, data,
     r"data.classes\[1\] is empty"),
    ({"model.latent_dim": 0}, models, "model.latent_dim=0 must be a positive integer"),
    ({"model.width": 0.0}, models, "model.width=0.0 must be a positive number"),
    ({"model.pack": 3}, models, "model.pack=3 must divide data.batch_size=8"),
    ({"train.optimizer": "rmsprop"}, optim, "train.optimizer='rmsprop' is not one of"),
    ({"train.clip_norm": -1.0}, optim, "train.clip_norm=-1.0 must be a non-negative number"),
    ({"train.beta1": 1.0}, optim, r"train.beta1=1.0 must be in \[0, 1\)"),
    ({"train.lr_decay": 1.0}, optim, r"train.lr_decay=1.0 must be in \[0, 1\)"),
    ({"train.strategy": "tpu"}, placement, "train.strategy='tpu' is not one of"),
    ({"train.strategy": "mirrored", "train.replicas": 3}, placement,
     r"train.replicas=3 must be a positive divisor of num_agents=2 \(1, 2\)"),
    ({"train.strategy": "mirrored", "train.mode": "centralized"}, placement,
     "train.mode=centralized trains one GAN"),
])
def test_each_module_refuses_a_bad_field_of_its_own(overrides, module, match):
  """The module's own check_config names the field, and config.validate reaches it."""
  with pytest.raises(ConfigError, match=match):
    module.check_config(_config(**overrides))
  with pytest.raises(ConfigError, match=match):
    config_lib.validate(_config(**overrides))


def test_default_and_tiny_configs_pass_every_check():
  config_lib.validate(default.get_config())
  config_lib.validate(_config())


def test_a_negative_seed_is_refused():
  with pytest.raises(ConfigError, match=r"seed=-1 must be a non-negative integer"):
    config_lib.validate(_config(seed=-1))


def test_agents_that_share_a_class_are_refused_naming_them():
  config = _config(**{"num_agents": 3, "data.partition": "classes",
                      "data.classes": [[0, 1, 2], [1, 3], [4, 2, 1]]})
  with pytest.raises(ConfigError) as e:
    config_lib.validate(config)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith("data.classes gives a class to more than one agent (class 1 by "
                            "agents [0, 1, 2]; class 2 by agents [0, 2])")


def test_a_file_as_source_dir_is_named_a_file():
  with pytest.raises(DataError, match=r"data.source_dir='.*conftest.py' is a file, not a directory"):
    config_lib.validate(tiny_config(os.path.join(ROOT, "tests", "conftest.py")))


def test_a_worker_count_that_does_not_divide_k_lists_the_divisors():
  with pytest.raises(PlacementError, match="5 agents cannot be spread evenly over 3 workers: .* "
                                           "Use one of these numbers of workers: 1, 5; or"):
    placement.Placement(5, 3)
  with pytest.raises(PlacementError, match="numbers of workers: 1, 2, 3, 6;"):
    placement.Placement(6, 4)


def _bin_train(workdir, idx_dir, *flags):
  cmd = [sys.executable, os.path.join(ROOT, "bin", "train"),
         f"--config={os.path.join(ROOT, 'configs', 'mnist_iid.py')}", f"--workdir={workdir}",
         f"--config.data.source_dir={idx_dir}", "--config.num_agents=2",
         "--config.topology.graph=ring", "--config.model.width=0.125",
         "--config.model.latent_dim=16", "--config.data.batch_size=8", "--config.train.n_d=1",
         "--config.train.log_every=1", "--config.train.checkpoint_every=1",
         "--config.train.sample_every=1000", "--config.eval.eval_every=0",
         "--config.eval.final_samples=0", *flags]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT))


def _saved_state(workdir):
  """sha256 of every file of the run (the lock file aside): what a refused command must keep."""
  out = {}
  for path in sorted(glob.glob(os.path.join(workdir, "**", "*"), recursive=True)):
    if os.path.isfile(path) and os.path.basename(path) != ".lock":
      out[os.path.relpath(path, workdir)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
  return out


@pytest.mark.e2e
def test_more_iterations_under_lr_decay_is_refused_and_the_run_is_kept(tmp_path, idx_dir):
  """mu_i = mu (1 - lr_decay i / train.iterations): raising the total on resume would make the
  step size jump, so a run with lr_decay > 0 resumes only with its own train.iterations."""
  workdir = str(tmp_path / "run")
  first = _bin_train(workdir, idx_dir, "--config.train.iterations=2", "--config.train.lr_decay=0.5")
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
  before = _saved_state(workdir)
  assert any(k.startswith("checkpoints/ckpt-2") for k in before)
  result = _bin_train(workdir, idx_dir, "--config.train.iterations=4", "--config.train.lr_decay=0.5")
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "Traceback" not in result.stderr
  assert errors[0] == (f"error: train.iterations=4 cannot resume {workdir} (saved 2) while "
                       "train.lr_decay=0.5: the step size depends on the total, so it would jump "
                       "at the resume. Keep --config.train.iterations=2, or train runs to extend "
                       "with train.lr_decay=0.")
  assert _saved_state(workdir) == before


def test_more_iterations_without_lr_decay_still_resumes(tmp_path, idx_dir):
  """check_resume alone (no training): lr_decay = 0 keeps train.iterations resumable."""
  for decay in (0.0, 0.1):
    workdir = tmp_path / f"decay{decay}"
    (workdir / "checkpoints").mkdir(parents=True)
    (workdir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    config_lib.write(str(workdir), tiny_config(idx_dir, **{"train.iterations": 2,
                                                           "train.lr_decay": decay}))
    longer = tiny_config(idx_dir, **{"train.iterations": 4, "train.lr_decay": decay})
    if decay:
      with pytest.raises(ConfigError, match="train.iterations=4 cannot resume"):
        config_lib.check_resume(str(workdir), longer)
    else:
      config_lib.check_resume(str(workdir), longer)


@pytest.mark.e2e
def test_multiworker_relaunch_with_another_learning_rate_is_refused(tmp_path, idx_dir):
  """Workers checkpoint under checkpoints/worker-N/: a relaunch with another config must see
  those checkpoints and refuse, leaving config.json (and every checkpoint) as they were."""
  from test_multiworker import _launch, _matrix_file, _train_flags  # pylint: disable=g-import-not-at-top
  matrix, workdir = _matrix_file(tmp_path), str(tmp_path / "run")
  first = _launch(2, *_train_flags(idx_dir, workdir, matrix, "--config.train.strategy=multiworker",
                                   iterations=1))
  assert first.returncode == 0, first.stdout[-3000:]
  assert glob.glob(os.path.join(workdir, "checkpoints", "worker-*", "checkpoint"))
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "checkpoint"))
  before = _saved_state(workdir)
  result = _launch(2, *_train_flags(idx_dir, workdir, matrix, "--config.train.strategy=multiworker",
                                    "--config.train.learning_rate=0.01", iterations=1))
  assert result.returncode == 2, result.stdout[-3000:]
  assert "cannot be resumed" in result.stdout and "train.learning_rate: saved" in result.stdout
  assert "Traceback" not in result.stdout
  assert _saved_state(workdir) == before
