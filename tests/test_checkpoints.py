"""A damaged checkpoint: the run says which, falls back to the newest intact one (never deleting
the damaged one) and still ends with the weights of an uninterrupted run."""

import glob
import os
import shutil

import numpy as np
import pytest

from conftest import make_idx_dir, tiny_config
from tfdiffgan import run as run_lib
from tfdiffgan.errors import TrainingError

pytestmark = pytest.mark.e2e


def _weights(r):
  return [v.numpy() for m in r.step.generators + r.step.discriminators for v in m.weights]


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip(path):
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture(scope="module")
def stopped_at_4(tmp_path_factory):
  """Trained once for every kind of damage: the weights of a run straight to iteration 6, and
  a workdir stopped at iteration 4 (ckpt-2, ckpt-4) that each test damages in a copy."""
  root = tmp_path_factory.mktemp("checkpoints")
  idx = str(root / "idx")
  make_idx_dir(idx)
  cfg = lambda n: tiny_config(idx, **{"train.iterations": n})
  straight = run_lib.Run(cfg(6), str(root / "straight"))
  straight.train()
  run_lib.Run(cfg(4), str(root / "stopped")).train()          # ckpt-2, ckpt-4
  return cfg, _weights(straight), str(root / "stopped")


@pytest.mark.parametrize("damage", [_truncate, _flip])
def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(
    tmp_path, stopped_at_4, capsys, damage):
  cfg, straight, stopped = stopped_at_4
  workdir = str(tmp_path / "run")
  shutil.copytree(stopped, workdir)
  data = os.path.join(workdir, "checkpoints", "ckpt-4.data-00000-of-00001")
  damage(data)
  damaged_bytes = open(data, "rb").read()
  capsys.readouterr()
  resumed = run_lib.Run(cfg(6), workdir)
  out = capsys.readouterr().out
  assert "ckpt-4 is damaged" in out and "falling back to ckpt-2" in out, out
  assert "resumed" in out and "ckpt-2 at iteration 2" in out
  kept = os.path.join(workdir, "checkpoints", "damaged", "ckpt-4.data-00000-of-00001")
  assert open(kept, "rb").read() == damaged_bytes               # set aside, not deleted
  resumed.train()
  for a, b in zip(straight, _weights(resumed)):
    np.testing.assert_array_equal(a, b)


def test_every_checkpoint_damaged_is_refused_and_nothing_moved(tmp_path, idx_dir):
  workdir = str(tmp_path / "run")
  run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 2}), workdir).train()
  for path in glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.data-*")):
    _truncate(path)
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  with pytest.raises(TrainingError, match=r"every checkpoint in .* is damaged \(ckpt-2: "):
    run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 4}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_multiworker_falls_back_to_the_newest_iteration_every_worker_holds_intact(
    tmp_path, idx_dir):
  """Worker 1's ckpt-4 is damaged: both workers resume from ckpt-2 and end where a run never
  damaged ends."""
  from test_multiworker import _agent_weights, _launch, _matrix_file, _train_flags  # pylint: disable=g-import-not-at-top
  matrix = _matrix_file(tmp_path)
  flags = lambda workdir, n: _train_flags(idx_dir, workdir, matrix,
                                          "--config.train.strategy=multiworker",
                                          "--config.train.checkpoint_every=2", iterations=n)
  straight, damaged = str(tmp_path / "straight"), str(tmp_path / "damaged")
  for workdir, n in ((straight, 6), (damaged, 4)):
    result = _launch(2, *flags(workdir, n))
    assert result.returncode == 0, result.stdout[-3000:]
  _truncate(os.path.join(damaged, "checkpoints", "worker-1", "ckpt-4.data-00000-of-00001"))
  result = _launch(2, *flags(damaged, 6))
  assert result.returncode == 0, result.stdout[-3000:]
  assert "worker-1/ckpt-4 is damaged" in result.stdout
  assert result.stdout.count("ckpt-2 at iteration 2") == 2, result.stdout[-3000:]
  want, got = _agent_weights(straight), _agent_weights(damaged)
  assert set(want) == set(got)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
