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


def _mmd2_unbiased_loops(x, y):
  """The unbiased MMD^2 of the cubic polynomial kernel, pair by pair (an independent reference)."""
  d = x.shape[1]
  k = lambda u, v: (float(np.dot(u, v)) / d + 1) ** 3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return xx + yy - 2 * xy


def test_kid_subsets_are_disjoint_and_each_value_is_the_unbiased_mmd():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(40, 3)), rng.normal(0.3, 1.0, size=(52, 3))
  subsets = metrics.disjoint_subsets(40, 52, 4, 1000, np.random.default_rng(0))
  assert [len(a) for a, _ in subsets] == [len(b) for _, b in subsets] == [10] * 4
  for side in (0, 1):
    flat = np.concatenate([s[side] for s in subsets])
    assert len(set(flat.tolist())) == len(flat)  # no sample in two subsets
  values = [_mmd2_unbiased_loops(x[a], y[b]) for a, b in subsets]
  kid, se = metrics.kid_from_features(x, y, num_subsets=4, seed=0)
  assert kid == pytest.approx(np.mean(values), rel=1e-10)
  assert se == pytest.approx(np.std(values, ddof=1) / 2, rel=1e-10)
  # one subset of everything: the whole-sample unbiased MMD^2, no standard error
  whole, se1 = metrics.kid_from_features(x[:20], y[:20], num_subsets=1, subset_size=20)
  assert whole == pytest.approx(_mmd2_unbiased_loops(x[:20], y[:20]), rel=1e-10) and se1 == 0.0


def test_kid_standard_error_from_disjoint_subsets_is_calibrated():
  """Over repeated draws, the spread of the KID estimate matches its reported standard error
  (subsets that overlap would report a smaller one)."""
  rng = np.random.default_rng(0)
  kids, ses = [], []
  for _ in range(150):
    kid, se = metrics.kid_from_features(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)),
                                        num_subsets=10, seed=int(rng.integers(1 << 30)))
    kids.append(kid)
    ses.append(se)
  assert 0.75 < np.mean(ses) / np.std(kids) < 1.33


class _PixelClassifier:
  """Features = the image's pixels; logits = one-hot of its first pixel's class (0..9)."""
  def features_and_logits(self, images):
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    return flat, np.eye(10)[np.clip(flat[:, 0].astype(int), 0, 9)]


def test_pooled_score_is_the_score_of_equal_shares_of_every_agent():
  ev = object.__new__(metrics.Evaluator)
  ev.classifier, ev.check = _PixelClassifier(), _PixelClassifier()
  rng = np.random.default_rng(5)
  ev.real_features = ev.check_real_features = rng.normal(size=(300, 3))
  gens = [lambda z, s=s: np.asarray(z)[:, :3] + s for s in (0.0, 2.0, 5.0)]
  pooled = ev.score_pooled(gens, latent_dim=4, num_samples=90, seed=7)
  z = np.random.default_rng(7).normal(size=(90, 4)).astype(np.float32)[:, :3]
  ref = np.concatenate([z[30 * k:30 * (k + 1)] + s for k, s in enumerate((0.0, 2.0, 5.0))])
  m1, m2 = ref.mean(0), ev.real_features.mean(0)
  s1, s2 = np.cov(ref, rowvar=False), np.cov(ev.real_features, rowvar=False)
  assert pooled["fid"] == pytest.approx(_tfgan_reference(m1, s1, m2, s2), rel=1e-6)
  assert pooled["num_agents"] == 3 and pooled["samples_per_agent"] == 30
  assert pooled["num_samples"] == 90
  # equal shares: the pooled class histogram is the mean of the agents' histograms, by both
  hists = [metrics.class_histogram(_PixelClassifier().features_and_logits(
      z[30 * k:30 * (k + 1)] + s)[1]) for k, s in enumerate((0.0, 2.0, 5.0))]
  assert pooled["class_histogram"] == pytest.approx(np.mean(hists, 0), abs=1e-4)
  assert pooled["check_class_histogram"] == pooled["class_histogram"]
  # the pooled FID is not the mean of the agents' FIDs (here it ranks the network differently)
  per_agent = [ev.score_generator(g, 4, 30, seed=7)["fid"] for g in gens]
  assert abs(pooled["fid"] - np.mean(per_agent)) > 1.0


def test_agents_that_agree_pool_into_the_samples_of_one_of_them():
  """Each agent draws its own slice of the noise: K copies of one generator pool into exactly
  that generator's num_samples images (not K copies of num_samples / K images, which would score
  agents near consensus on a smaller, less diverse set than agents that disagree)."""
  ev = object.__new__(metrics.Evaluator)
  ev.classifier, ev.check = _PixelClassifier(), _PixelClassifier()
  ev.real_features = ev.check_real_features = np.random.default_rng(6).normal(size=(300, 3))
  same = lambda z: np.asarray(z)[:, :3]
  pooled = ev.score_pooled([same] * 3, latent_dim=4, num_samples=90, seed=7)
  alone = ev.score_generator(same, 4, 90, seed=7)
  assert pooled["fid"] == pytest.approx(alone["fid"], rel=1e-9)
  assert pooled["noise"] == metrics.POOLED_NOISE


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
