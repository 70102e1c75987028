"""SavedModel export/reload, bin/evaluate and bin/generate on a tiny generator, bad exports."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from tfdiffgan import evaluate, export, models
from tfdiffgan.export import ExportError


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
  keras.utils.set_random_seed(0)
  g = models.make_generator(latent_dim=8, width=0.125)
  path = str(tmp_path_factory.mktemp("export") / "agent_0")
  export.export_generator(g, path, latent_dim=8)
  z = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
  return path, z, g(z, training=False).numpy()


def test_export_reloads_with_signature_and_same_outputs(tiny_export):
  path, z, expected = tiny_export
  serve, latent = export.load_generator(path)
  assert latent == 8
  np.testing.assert_allclose(serve(tf.constant(z)).numpy(), expected, atol=1e-5)


def test_corrupt_and_wrong_shaped_exports_are_named(tmp_path):
  bad = tmp_path / "corrupt"
  bad.mkdir()
  (bad / "saved_model.pb").write_bytes(b"garbage")
  with pytest.raises(ExportError, match="cannot load the SavedModel"):
    export.load_generator(str(bad))
  with pytest.raises(ExportError, match="not an exported generator"):
    export.load_generator(str(tmp_path / "missing"))
  wrong = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
  archive = keras.export.ExportArchive()
  archive.track(wrong)
  archive.add_endpoint(name="serve", fn=lambda z: wrong(z),
                       input_signature=[tf.TensorSpec([None, 8], tf.float32)])
  archive.write_out(str(tmp_path / "wrong"), verbose=False)
  with pytest.raises(ExportError, match="expected \\[N, 28, 28, 1\\]"):
    export.load_generator(str(tmp_path / "wrong"))


def test_image_grid_layout():
  images = np.stack([np.full((28, 28, 1), v) for v in (-1.0, 0.0, 1.0, 1.0)])
  grid = export.image_grid(images)
  assert grid.shape == (56, 56, 1) and grid.dtype == np.uint8
  assert grid[0, 0, 0] == 0 and grid[0, 28, 0] == 128 and grid[28, 28, 0] == 255


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "bin", script), *args],
                        capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.e2e
def test_bin_generate_grid_and_directory(tiny_export, tmp_path):
  path, _, _ = tiny_export
  r = _run("generate", f"--model={path}", "--num=9", f"--out={tmp_path / 'grid.png'}", "--seed=3")
  assert r.returncode == 0, r.stderr[-2000:]
  assert tf.io.decode_png(tf.io.read_file(str(tmp_path / "grid.png"))).shape == (84, 84, 1)
  r = _run("generate", f"--model={path}", "--num=4", f"--out={tmp_path / 'single'}/")
  assert r.returncode == 0 and len(os.listdir(tmp_path / "single")) == 4
  r = _run("generate", f"--model={tmp_path / 'nope'}")
  assert r.returncode == 2 and "not an exported generator" in r.stderr


@pytest.mark.e2e
def test_bin_evaluate_on_a_tiny_generator(tiny_export, tmp_path):
  path, _, _ = tiny_export
  out = tmp_path / "eval.json"
  r = _run("evaluate", f"--model={path}", "--dataset=mnist", "--num_samples=300", f"--out={out}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "FID" in r.stdout and "classifier: mnist v1" in r.stdout
  result = json.load(open(out))
  agent = result["agents"][0]
  assert agent["fid"] > 50  # an untrained generator is far from MNIST
  assert 1 <= agent["coverage"] <= 10 and abs(sum(agent["class_histogram"]) - 1) < 1e-3
  assert result["classifier"]["test_accuracy"] >= 0.985


def test_evaluate_needs_one_source_and_existing_inception_weights(tiny_export):
  with pytest.raises(ValueError, match="exactly one"):
    evaluate.evaluate()
  from tfdiffgan.metrics import MetricsError  # pylint: disable=g-import-not-at-top
  with pytest.raises(MetricsError, match="InceptionV3 weights file"):
    evaluate.evaluate(model=tiny_export[0], inception_weights="/nonexistent/inception.h5")


def _save_module(path, fn, signature):
  module = tf.Module()
  module.serve = tf.function(fn, input_signature=signature)
  tf.saved_model.save(module, str(path))
  return str(path)


def test_foreign_serve_signatures_are_named(tmp_path):
  """serve() taking int32, taking two arguments, or returning a dict: one ExportError each."""
  img = lambda z: tf.zeros([tf.shape(z)[0], 28, 28, 1])
  cases = [
      (lambda z: img(z), [tf.TensorSpec([None, 8], tf.int32)], "must take one float32"),
      (lambda z, y: img(z), [tf.TensorSpec([None, 8], tf.float32)] * 2, "must take one float32"),
      (lambda z: {"images": img(z)}, [tf.TensorSpec([None, 8], tf.float32)],
       "returns a dict, not one tensor"),
  ]
  for i, (fn, signature, match) in enumerate(cases):
    path = _save_module(tmp_path / f"m{i}", fn, signature)
    with pytest.raises(ExportError, match=match):
      export.load_generator(path)


def test_generate_refuses_a_non_positive_num(tiny_export, tmp_path):
  from tfdiffgan.config import ConfigError  # pylint: disable=g-import-not-at-top
  for num in (0, -5):
    with pytest.raises(ConfigError, match=rf"--num={num} must be a positive number"):
      evaluate.generate(tiny_export[0], num, str(tmp_path / "x.png"))
  assert not os.path.exists(tmp_path / "x.png")


def test_evaluate_refuses_a_generator_with_nan_weights(tmp_path):
  """A diverged generator draws NaN: bin/evaluate refuses it by name instead of a FID."""
  from tfdiffgan.metrics import MetricsError  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  g = models.make_generator(latent_dim=8, width=0.125)
  g.trainable_variables[0].assign(tf.fill(g.trainable_variables[0].shape, float("nan")))
  path = export.export_generator(g, str(tmp_path / "agent_0"), latent_dim=8)
  with pytest.raises(MetricsError, match=r"agent_0: 300 of 300 samples hold NaN or Inf"):
    evaluate.evaluate(model=path, dataset="mnist", num_samples=300)
