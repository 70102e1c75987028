"""Frechet distance and KID against closed forms; the project classifier's FID on degradations."""

import numpy as np
import pytest
import scipy.linalg

from tfdiffgan import data, metrics


def _tfgan_reference(mu1, s1, mu2, s2):
  """TF-GAN's frechet_classifier_distance_from_activations, in numpy: the trace of the square
  root of S1 S2 through the eigenvalues of sqrt(S1) S2 sqrt(S1)."""
  r1 = scipy.linalg.sqrtm(s1)
  eig = np.linalg.eigvalsh(r1 @ s2 @ r1)
  tr_sqrt = np.sum(np.sqrt(np.clip(eig, 0, None)))
  return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt


def test_frechet_distance_closed_forms():
  # diagonal: sum (m1 - m2)^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) = sum dm^2 + sum (sqrt s1 - sqrt s2)^2
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
  expected = 5.0 + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  assert metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)
  # commuting non-diagonal: S2 = 4 S1 gives Tr(S1 + 4 S1 - 2 * 2 S1) = Tr(S1)
  rng = np.random.default_rng(0)
  B = rng.normal(size=(4, 4))
  S1 = B @ B.T + np.eye(4)
  assert metrics.frechet_distance(np.zeros(4), S1, np.zeros(4), 4 * S1) == \
      pytest.approx(np.trace(S1), rel=1e-9)


def test_frechet_distance_general_case_matches_tfgan_formula_and_is_symmetric():
  rng = np.random.default_rng(1)
  A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
  S1, S2 = A @ A.T + 0.1 * np.eye(6), B @ B.T + 0.1 * np.eye(6)
  m1, m2 = rng.normal(size=6), rng.normal(size=6)
  d12 = metrics.frechet_distance(m1, S1, m2, S2)
  assert d12 == pytest.approx(_tfgan_reference(m1, S1, m2, S2), rel=1e-8)
  assert d12 == pytest.approx(metrics.frechet_distance(m2, S2, m1, S1), rel=1e-8)
  assert metrics.frechet_distance(m1, S1, m1, S1) == pytest.approx(0, abs=1e-6)


def test_kid_identical_near_zero_shifted_positive():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2000, 16))
  y = rng.normal(size=(2000, 16))
  same, se = metrics.kid_from_features(x, y, subset_size=500)
  shifted, _ = metrics.kid_from_features(x, y + 0.5, subset_size=500)
  assert abs(same) < 3 * se + 1e-3
  assert shifted > 20 * max(se, 1e-4) and shifted > 0.05


def test_coverage_and_entropy():
  assert metrics.coverage(np.full(10, 0.1)) == 10
  assert metrics.entropy_bits(np.full(10, 0.1)) == pytest.approx(np.log2(10))
  assert metrics.coverage(np.eye(10)[3]) == 1 and metrics.entropy_bits(np.eye(10)[3]) == 0


@pytest.fixture(scope="module")
def mnist_evaluator():
  arrays = data.load_dataset("mnist")
  ev = metrics.Evaluator("mnist", verbose=True)
  return ev, arrays


@pytest.mark.e2e
def test_classifier_fid_orders_degradations_and_coverage(mnist_evaluator):
  ev, arrays = mnist_evaluator
  assert ev.classifier.accuracy >= metrics.MIN_ACCURACY["mnist"]
  real = data.to_float(arrays["x_test"])
  other = data.to_float(arrays["x_train"][:10000])
  scores = {"real": ev.score_images(other, kid_subsets=3)}
  for name, images in metrics.degradations(real, arrays["y_test"]).items():
    scores[name] = ev.score_images(images, kid_subsets=3)
  fid = {k: v["fid"] for k, v in scores.items()}
  assert fid["real"] < 2.0
  assert fid["real"] < fid["noise N(0, 0.1)"] < fid["blur (Gaussian, 0.5 px)"] < fid["classes 0-4 only"] \
      < fid["one class"]
  assert scores["real"]["coverage"] == 10 and scores["one class"]["coverage"] == 1
  assert scores["real"]["kid"] < scores["one class"]["kid"]
  # the check classifier: a second reading of the same samples
  assert ev.check.accuracy >= metrics.MIN_ACCURACY["mnist"] and ev.check.role == "check"
  assert scores["real"]["robust_coverage"] == 10 and scores["one class"]["robust_coverage"] == 1
  assert scores["real"]["classifier_agreement"] > 0.97
  assert scores["uniform noise"]["classifier_agreement"] < 0.9
  assert fid["real"] < 2.0 and scores["real"]["check_fid"] < scores["one class"]["check_fid"]
  robust = metrics.robust_coverage([[0.5, 0.05, 0.45], [0.5, 0.049, 0.451]], threshold=0.05)
  assert robust == 2
