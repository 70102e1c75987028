"""Shared fixtures: small configs that train in seconds, and IDX fixtures written on the fly."""

import gzip
import os
import struct
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfdiffgan/__init__.py: test what users run
import tfdiffgan  # pylint: disable=g-import-not-at-top,unused-import  (quiet TF, as users get)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "e2e: end-to-end (trains, builds a run, launches bin/* or python, builds a "
      "wheel); `make test-fast` leaves these out, `make test` runs both tiers")


def write_idx(path, array):
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.tobytes())


def make_idx_dir(directory, n_train=200, n_test=50, gz=True, seed=0):
  """A tiny MNIST-shaped dataset: class c images are bright in column band c."""
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)
  out = {}
  for split, n in (("train", n_train), ("t10k", n_test)):
    y = np.arange(n) % 10
    x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):
      x[i, :, 2 * c:2 * c + 3] = 250
    suffix = ".gz" if gz else ""
    write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte{suffix}"), x)
    write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte{suffix}"), y)
    out[split] = (x, y)
  return out


@pytest.fixture
def idx_dir(tmp_path):
  d = str(tmp_path / "idx")
  make_idx_dir(d)
  return d


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """An empty project cache, so tests never touch the user's."""
  d = tmp_path / "cache"
  monkeypatch.setenv("TFDIFFGAN_CACHE", str(d))
  return d


def tiny_config(source_dir, **overrides):
  """Two agents on tiny data: a run traces and trains in a few seconds."""
  from tfdiffgan.configs import default  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  c.num_agents = 2
  c.data.source_dir = source_dir
  c.data.batch_size = 8
  c.data.classes = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
  c.topology.graph = "ring"
  c.model.width = 0.125
  c.model.latent_dim = 16
  c.train.iterations = 3
  c.train.n_d = 2
  c.train.log_every = 1
  c.train.checkpoint_every = 2
  c.train.sample_every = 2
  c.eval.eval_every = 0
  c.eval.final_samples = 0
  for key, value in overrides.items():
    node = c
    parts = key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  return c
