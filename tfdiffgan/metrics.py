"""Offline evaluation: a feature classifier the project trains itself, FID, KID and class coverage.

Keras' InceptionV3 weights cannot be downloaded here, so the Frechet distance is taken on the
penultimate layer of a small CNN trained (fixed seed, fixed architecture, versioned) on the
dataset's train split. Such FIDs compare only within one classifier: its version and accuracy are
part of every result. Inception FID is available when the user supplies a local weights file.

Formulas follow TF-GAN's ``tfgan.eval`` (frechet_classifier_distance, kernel_classifier_distance),
which no longer imports on TensorFlow >= 2.16 (tensorflow/gan#55); everything is float64.
"""

import json
import os

import numpy as np
import warnings

import scipy.linalg
import scipy.ndimage
import tensorflow as tf
import keras

from tfdiffgan import data as data_lib
from tfdiffgan import files
from tfdiffgan.errors import MetricsError

# Per dataset: the recipe is part of every FID, so changing it bumps that dataset's version.
# Fashion v2 uses 5x5 same-padded convolutions: the 3x3 v1 recipe stalled at 89.6-89.8%.
CLASSIFIER_VERSION = {"mnist": 1, "fashion_mnist": 2}
CLASSIFIER_EPOCHS = {"mnist": 2, "fashion_mnist": 4}
CLASSIFIER_BATCH = {"mnist": 128, "fashion_mnist": 64}
MIN_ACCURACY = {"mnist": 0.985, "fashion_mnist": 0.90}
# How the pooled score draws its noise: "disjoint", each agent its own slice of one draw (scores
# from before, where every agent reused the same z, are not comparable and are not read).
POOLED_NOISE = "disjoint"
COVERAGE_THRESHOLD = 0.05  # a class is covered when it holds at least 5% of the samples

# Two classifiers read every sample. "main" gives the FID that results quote; "check" has another
# architecture (average pooling, other widths, a 64-wide feature layer) and another seed, so a
# class share that only one of them sees (an ambiguous stroke read as a 2 by one and a 7 by the
# other) does not count as coverage: robust coverage needs both to give a class 5% or more.
CHECK_VERSION = 1
CLASSIFIER_SEED = {"main": 0, "check": 1}


# --------------------------------------------------------------------- feature classifier


def _build_classifier(dataset, role="main"):
  if role == "check":
    return keras.Sequential([
        keras.Input(data_lib.IMAGE_SHAPE),
        keras.layers.Conv2D(16, 5, padding="same", activation="relu"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(48, 5, padding="same", activation="relu"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", name="features"),
        keras.layers.Dense(data_lib.NUM_CLASSES, name="logits"),
    ], name="check_classifier")
  kernel, padding = (3, "valid") if CLASSIFIER_VERSION[dataset] == 1 else (5, "same")
  return keras.Sequential([
      keras.Input(data_lib.IMAGE_SHAPE),
      keras.layers.Conv2D(32, kernel, padding=padding, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, kernel, padding=padding, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Flatten(),
      keras.layers.Dense(128, activation="relu", name="features"),
      keras.layers.Dense(data_lib.NUM_CLASSES, name="logits"),
  ], name="feature_classifier")


def _version(dataset, role):
  return CLASSIFIER_VERSION[dataset] if role == "main" else CHECK_VERSION


class FeatureClassifier:
  """Penultimate-layer features and class predictions for images in [-1, 1]."""

  def __init__(self, model, dataset, accuracy, role="main"):
    self.model, self.dataset, self.accuracy = model, dataset, float(accuracy)
    self.role, self.version = role, _version(dataset, role)
    features = model.get_layer("features").output
    self._both = keras.Model(model.inputs, [features, model.outputs[0]])
    self._predict = tf.function(lambda x: self._both(x, training=False))

  def features_and_logits(self, images, batch_size=1000):
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
      f, l = self._predict(tf.convert_to_tensor(images[i:i + batch_size], tf.float32))
      feats.append(f.numpy())
      logits.append(l.numpy())
    return np.concatenate(feats).astype(np.float64), np.concatenate(logits)

  def describe(self):
    out = {"dataset": self.dataset, "version": self.version, "test_accuracy": self.accuracy}
    return out if self.role == "main" else {"role": self.role, **out}


def classifier_paths(dataset, role="main"):
  name = "classifier" if role == "main" else f"classifier_{role}"
  base = os.path.join(data_lib.cache_dir(), f"{name}_{dataset}_v{_version(dataset, role)}")
  return base + ".keras", base + ".json"


def train_classifier(dataset, arrays=None, seed=None, verbose=False, role="main"):
  """Trains a feature classifier with its fixed seed; fails loudly below the accuracy floor."""
  arrays = arrays or data_lib.load_dataset(dataset)
  keras.utils.set_random_seed(CLASSIFIER_SEED[role] if seed is None else seed)
  model = _build_classifier(dataset, role)
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  x, y = data_lib.to_float(arrays["x_train"]), arrays["y_train"]
  epochs = CLASSIFIER_EPOCHS[dataset] + (role == "check")  # its smaller net needs one more
  model.fit(x, y, batch_size=CLASSIFIER_BATCH[dataset], epochs=epochs,
            shuffle=True,
            verbose=2 if verbose else 0)
  _, accuracy = model.evaluate(data_lib.to_float(arrays["x_test"]), arrays["y_test"],
                               batch_size=1000, verbose=0)
  if accuracy < MIN_ACCURACY[dataset]:
    raise MetricsError(f"the {dataset} {role} feature classifier reached test accuracy "
                       f"{accuracy:.4f} < {MIN_ACCURACY[dataset]}; its FIDs would not be "
                       "trustworthy. Check the dataset files (a corrupt cache?) and retry.")
  return FeatureClassifier(model, dataset, accuracy, role)


def load_classifier(dataset, arrays=None, verbose=False, role="main"):
  """The cached classifier ``role`` for ``dataset`` (trained and cached on first use, ~30-70 s)."""
  model_path, info_path = classifier_paths(dataset, role)
  if os.path.exists(model_path) and os.path.exists(info_path):
    try:
      with open(info_path) as f:
        info = json.load(f)
      if info.get("version") == _version(dataset, role):
        return FeatureClassifier(keras.models.load_model(model_path), dataset,
                                 info["test_accuracy"], role)
    except Exception as e:  # pylint: disable=broad-except
      if verbose:
        print(f"[metrics] cached classifier unreadable ({e}); retraining")
  if verbose:
    print(f"[metrics] training the {dataset} {role} feature classifier (once; cached in "
          f"{data_lib.cache_dir()})", flush=True)
  clf = train_classifier(dataset, arrays=arrays, verbose=verbose, role=role)
  with data_lib.cache_writes(model_path):
    clf.model.save(model_path)
    files.write_json(info_path, clf.describe())
  if verbose:
    print(f"[metrics] {role} classifier test accuracy {clf.accuracy:.4f}", flush=True)
  return clf


# ------------------------------------------------------------------------------ distances


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al. 2017; TF-GAN's formula)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  with warnings.catch_warnings():  # dead ReLU units make S1 S2 singular; sqrtm still converges
    warnings.simplefilter("ignore")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):  # regularize as in the reference code
      eps = 1e-6 * np.eye(len(sigma1))
      covmean = scipy.linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
  covmean = np.real(covmean)
  diff = mu1 - mu2
  return float(max(0.0, diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)))


def gaussian_stats(features):
  features = np.asarray(features, np.float64)
  return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_features(feats_a, feats_b):
  return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def disjoint_subsets(n_a, n_b, num_subsets, subset_size, rng):
  """Index pairs of ``num_subsets`` disjoint subsets of each side, each of size
  min(subset_size, n // num_subsets) (fewer subsets when a side is too small for two each)."""
  num_subsets = max(1, min(num_subsets, n_a // 2, n_b // 2))
  m = min(subset_size, n_a // num_subsets, n_b // num_subsets)
  pa, pb = rng.permutation(n_a), rng.permutation(n_b)
  return [(pa[i * m:(i + 1) * m], pb[i * m:(i + 1) * m]) for i in range(num_subsets)]


def kid_from_features(feats_a, feats_b, num_subsets=10, subset_size=1000, seed=0):
  """Kernel Inception Distance: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al.
  2018), averaged over DISJOINT random subsets; returns (mean, standard error).

  The subsets share no sample, so their MMD^2 values are independent and std / sqrt(n) is the
  standard error of their mean (overlapping subsets, as drawn before, are correlated and made it
  optimistic). With fewer than num_subsets * subset_size samples the subsets are smaller.
  """
  a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
  if min(len(a), len(b)) < 2:
    raise ValueError("KID needs at least two samples on each side")
  d = a.shape[1]
  values = []
  for ia, ib in disjoint_subsets(len(a), len(b), num_subsets, subset_size,
                                 np.random.default_rng(seed)):
    x, y, m = a[ia], b[ib], len(ia)
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) +
                  (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
  values = np.array(values)
  se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
  return float(values.mean()), se


def class_histogram(logits):
  counts = np.bincount(np.argmax(logits, axis=1), minlength=data_lib.NUM_CLASSES)
  return counts / max(1, counts.sum())


def coverage(hist, threshold=COVERAGE_THRESHOLD):
  return int(np.sum(np.asarray(hist) >= threshold))


def entropy_bits(hist):
  p = np.asarray(hist, np.float64)
  p = p[p > 0]
  return float(-(p * np.log2(p)).sum()) + 0.0  # no "-0.00" for a single class


# -------------------------------------------------------------------------------- evaluator


def robust_coverage(hists, threshold=COVERAGE_THRESHOLD):
  """Classes that every classifier's histogram gives at least ``threshold`` of the samples."""
  return int(np.sum(np.min(np.asarray(hists), axis=0) >= threshold))


class Evaluator:
  """Scores generators against the real test split: FID and KID on the main classifier's
  features, class shares read by both classifiers (``check=False``: the main one only)."""

  def __init__(self, dataset, classifier=None, arrays=None, verbose=False, check=True):
    arrays = arrays or data_lib.load_dataset(dataset)
    self.classifier = classifier or load_classifier(dataset, arrays=arrays, verbose=verbose)
    self.check = None
    if check:
      self.check = load_classifier(dataset, arrays=arrays, verbose=verbose, role="check")
    real_images = data_lib.to_float(arrays["x_test"])
    self.real_features, _ = self.classifier.features_and_logits(real_images)
    if self.check:
      self.check_real_features, _ = self.check.features_and_logits(real_images)

  def describe(self):
    """The classifiers behind the scores (their versions and accuracies are part of them)."""
    out = self.classifier.describe()
    if self.check:
      out = {**out, "check": self.check.describe()}
    return out

  def score_images(self, images, kid_subsets=10):
    bad = int(np.count_nonzero(~np.isfinite(np.asarray(images)).reshape(len(images), -1).all(1)))
    if bad:
      raise MetricsError(f"{bad} of {len(images)} samples hold NaN or Inf: the generator's weights "
                         "are not finite (a diverged run), so it cannot be scored. Score an "
                         "earlier checkpoint or retrain with a lower train.learning_rate.")
    feats, logits = self.classifier.features_and_logits(images)
    hist = class_histogram(logits)
    kid, kid_se = kid_from_features(feats, self.real_features, num_subsets=kid_subsets)
    out = {"fid": fid_from_features(feats, self.real_features), "kid": kid, "kid_se": kid_se,
           "coverage": coverage(hist), "entropy_bits": entropy_bits(hist),
           "class_histogram": [round(float(h), 4) for h in hist],
           "weakest_class_share": round(float(hist.min()), 4), "num_samples": len(images)}
    if self.check:
      check_feats, check_logits = self.check.features_and_logits(images)
      check_hist = class_histogram(check_logits)
      out.update({
          "check_fid": fid_from_features(check_feats, self.check_real_features),
          "check_coverage": coverage(check_hist),
          "check_class_histogram": [round(float(h), 4) for h in check_hist],
          "check_weakest_class_share": round(float(check_hist.min()), 4),
          "robust_coverage": robust_coverage([hist, check_hist]),
          # how often the two read a sample as the same digit (real test digits: ~98%)
          "classifier_agreement": round(float(np.mean(
              np.argmax(logits, 1) == np.argmax(check_logits, 1))), 4),
          "robust_weakest_class_share": round(float(np.minimum(hist, check_hist).min()), 4)})
    return out

  def score_generator(self, generate, latent_dim, num_samples, seed=0, batch_size=1000):
    """``generate(z)`` -> images in [-1, 1]; draws num_samples from N(0, I) with ``seed``."""
    return self.score_images(draw(generate, latent_dim, num_samples, seed, batch_size))

  def score_pooled(self, generates, latent_dim, num_samples, seed=0, batch_size=1000):
    """The scores of the POOLED samples of every agent, an equal share each: the network's
    samples as one distribution, not a mean of per-agent scores (the two can rank models
    differently: Wang, Farnia et al., arXiv 2310.11714).

    Agent k draws from its own slice k of one noise draw (``seed``), so no two agents are fed
    the same z: agents that agree (diffusion near consensus) would otherwise give near-copies of
    the same num_samples / K images, and the pool would be scored on a K-times smaller, less
    diverse set than agents that disagree (non-cooperative) give it."""
    K = len(generates)
    share = max(1, num_samples // K)
    z = draw(lambda z: z, latent_dim, share * K, seed, batch_size)  # the noise itself
    images = np.concatenate([
        np.asarray(g(tf.constant(z[i:min(i + batch_size, (k + 1) * share)])))
        for k, g in enumerate(generates) for i in range(k * share, (k + 1) * share, batch_size)])
    return {**self.score_images(images), "num_agents": K, "samples_per_agent": share,
            "noise": POOLED_NOISE}


def draw(generate, latent_dim, num_samples, seed=0, batch_size=1000):
  """num_samples images of ``generate(z)`` for z ~ N(0, I) drawn with ``seed`` (the first n
  of a longer draw are the same n)."""
  rng = np.random.default_rng(seed)
  images = []
  for i in range(0, num_samples, batch_size):
    z = rng.normal(size=(min(batch_size, num_samples - i), latent_dim)).astype(np.float32)
    images.append(np.asarray(generate(tf.constant(z))))
  return np.concatenate(images)


def network_summary(per_agent):
  """Mean and spread over agents of each scalar metric."""
  out = {}
  keys = ["fid", "kid", "coverage", "entropy_bits"]
  keys += [k for k in ("weakest_class_share", "check_fid", "check_coverage", "robust_coverage",
                       "robust_weakest_class_share", "classifier_agreement")
           if all(k in m for m in per_agent)]
  for key in keys:
    vals = np.array([m[key] for m in per_agent], np.float64)
    out[key + "_mean"], out[key + "_std"] = float(vals.mean()), float(vals.std())
    out[key + "_min"], out[key + "_max"] = float(vals.min()), float(vals.max())
  return out


INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_inception_weights(weights_path):
  """Refuses a path that is not a readable HDF5 file before any scoring starts."""
  if not weights_path or not os.path.isfile(weights_path):
    raise MetricsError(f"InceptionV3 weights file {weights_path!r} not found; pass a local "
                       f"'{INCEPTION_FILE}' (no network download happens here).")
  with open(weights_path, "rb") as f:
    if f.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
      raise MetricsError(f"--inception_weights={weights_path} is not an HDF5 file; expected "
                         f"Keras' InceptionV3 no-top weights, '{INCEPTION_FILE}'.")


def inception_features(images, weights_path, batch_size=32):
  """Pool-3 InceptionV3 features from a local weights file (resize to 299, three channels)."""
  check_inception_weights(weights_path)
  try:
    model = keras.applications.InceptionV3(include_top=False, pooling="avg",
                                           weights=weights_path, input_shape=(299, 299, 3))
  except (OSError, ValueError) as e:
    raise MetricsError(f"--inception_weights={weights_path} does not hold InceptionV3 no-top "
                       f"weights ({str(e).splitlines()[0][:160]}); expected "
                       f"'{INCEPTION_FILE}'.") from e
  feats = []
  for i in range(0, len(images), batch_size):
    x = tf.image.resize(tf.convert_to_tensor(images[i:i + batch_size], tf.float32), (299, 299))
    feats.append(model(tf.repeat(x, 3, axis=-1), training=False).numpy())
  return np.concatenate(feats).astype(np.float64)


def degradations(real_images, labels, seed=0):
  """Controlled corruptions of real images, mildest first: a sanity ladder for any FID.

  Noise is N(0, 0.1) on the [0, 1] pixel scale (0.2 on the [-1, 1] scale used here).
  """
  rng = np.random.default_rng(seed)
  x = np.asarray(real_images, np.float32)
  blurred = scipy.ndimage.gaussian_filter(x, sigma=(0, 0.5, 0.5, 0))
  half = x[np.isin(labels, [0, 1, 2, 3, 4])]
  one = x[labels == 1]
  return {
      "noise N(0, 0.1)": np.clip(x + rng.normal(0, 0.2, x.shape).astype(np.float32), -1, 1),
      "shift 2 px": np.roll(x, 2, axis=2),
      "blur (Gaussian, 0.5 px)": blurred,
      "classes 0-4 only": half,
      "one class": one,
      "uniform noise": rng.uniform(-1, 1, x.shape).astype(np.float32),
  }
