"""Bad input to the binaries' library calls: one clear error naming the problem and the fix,
and nothing already saved is changed."""

import os

import keras
import numpy as np
import pytest

from conftest import tiny_config
from tfdiffgan import evaluate, export, metrics, models
from tfdiffgan import run as run_lib
from tfdiffgan.errors import ConfigError, ExportError, MetricsError


def _export(path, poison=False):
  keras.utils.set_random_seed(0)
  g = models.make_generator(latent_dim=8, width=0.125)
  if poison:
    v = g.trainable_variables[0]
    v.assign(np.full(v.shape, np.nan, np.float32))
  export.export_generator(g, str(path), latent_dim=8)
  return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("exports")
  return _export(root / "good"), _export(root / "nan", poison=True)


def test_generate_refuses_a_name_that_is_not_png(exported, tmp_path):
  with pytest.raises(ConfigError, match=r"--out=.*grid\.jpg: bin/generate writes PNG"):
    evaluate.generate(exported[0], 4, str(tmp_path / "grid.jpg"))
  assert not os.listdir(tmp_path)


def test_generate_names_an_unwritable_or_impossible_target(exported, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ExportError, match=r"lies under .*file, which is a file"):
    evaluate.generate(exported[0], 4, str(blocker / "grid.png"))
  with pytest.raises(ExportError, match=r"lies under .*file, which is a file"):
    evaluate.generate(exported[0], 4, str(blocker / "pngs") + "/")
  # a place that refuses the write itself, even to root (permission bits do not stop root)
  with pytest.raises(ExportError, match=r"(cannot write --out=/proc/.*|not writable); choose "):
    evaluate.generate(exported[0], 4, "/proc/tfdiffgan_grid.png")
  assert blocker.read_text() == "x"


def test_generate_refuses_a_generator_that_draws_nan(exported, tmp_path):
  with pytest.raises(ExportError, match="draws non-finite pixels"):
    evaluate.generate(exported[1], 4, str(tmp_path / "grid.png"))
  assert not (tmp_path / "grid.png").exists()
  assert evaluate.generate(exported[0], 4, str(tmp_path / "ok.png")) == [str(tmp_path / "ok.png")]


def test_inception_weights_that_are_not_hdf5_are_named(tmp_path):
  fake = tmp_path / "weights.h5"
  fake.write_bytes(b"not an hdf5 file at all")
  with pytest.raises(MetricsError, match=r"weights\.h5 is not an HDF5 file; expected Keras"):
    metrics.check_inception_weights(str(fake))
  with pytest.raises(MetricsError, match="not found"):
    metrics.check_inception_weights(str(tmp_path / "missing.h5"))


@pytest.mark.e2e
def test_warm_start_from_a_run_with_more_agents_is_refused(tmp_path, idx_dir):
  source = str(tmp_path / "src")
  run_lib.train_and_evaluate(tiny_config(idx_dir, **{
      "num_agents": 3, "data.classes": [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]],
      "train.iterations": 1}), source)
  before = sorted(os.listdir(os.path.join(source, "checkpoints")))
  with pytest.raises(ConfigError, match=r"holds 3 agent\(s\) but this run has 2: .* same "
                     r"num_agents"):
    run_lib.train_and_evaluate(tiny_config(idx_dir, **{"train.init_from": source}),
                               str(tmp_path / "warm"))
  assert sorted(os.listdir(os.path.join(source, "checkpoints"))) == before


@pytest.mark.e2e
def test_a_run_refused_at_start_up_leaves_no_workdir(tmp_path, idx_dir):
  workdir = tmp_path / "new" / "run"
  with pytest.raises(ConfigError, match="fewer than data.batch_size"):
    run_lib.train_and_evaluate(tiny_config(idx_dir, **{"data.batch_size": 100000}), str(workdir))
  assert not workdir.exists() and not (tmp_path / "new").exists()


@pytest.mark.e2e
def test_evaluate_reads_checkpoints_without_building_or_resuming_a_run(tmp_path, idx_dir, capsys):
  """A workdir without exports: bin/evaluate's generators come from the newest checkpoint,
  equal to the run's own, and nothing claims the run was resumed."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  r = run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 2, "train.ema_decay": 0.5}),
                  workdir)
  r.train()
  shutil.rmtree(os.path.join(workdir, "export"))
  capsys.readouterr()
  _, gens = evaluate.workdir_generators(workdir)
  assert "resumed" not in capsys.readouterr().out
  z = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  for (name, generate, latent), g in zip(gens, r.step.ema_generators):
    assert latent == 16
    np.testing.assert_allclose(np.asarray(generate(z)), g(z, training=False).numpy(), atol=1e-6)
