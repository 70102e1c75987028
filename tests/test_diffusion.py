"""The compiled ATC step: combine arithmetic, A = I independence, contraction at rate lambda_2."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfdiffgan import diffusion, models, optim, schedule, topology


def _agents(K, lr=0.05, seed=0, optimizer="sgd", A=None, n_d=1, n_g=1, agent_ids=None,
            ema_decay=0.0):
  gens, discs, emas = [], [], []
  for k in (agent_ids or range(K)):
    keras.utils.set_random_seed(seed * 1000 + k)
    gens.append(models.make_generator(8, 0.125))
    discs.append(models.make_discriminator(0.125))
    if ema_decay:
      emas.append(models.make_generator(8, 0.125))
  opts = lambda: [optim.make_optimizer(optimizer, lr) for _ in range(K)]
  A = np.eye(K) if A is None else A
  return diffusion.DiffusionStep(gens, discs, opts(), opts(), A, n_d=n_d, n_g=n_g, latent_dim=8,
                                 seed=seed, agent_ids=agent_ids, ema_generators=emas,
                                 ema_decay=ema_decay)


def _real(K, n_d, batch=4, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(tf.constant(rng.uniform(-1, 1, (n_d, batch, 28, 28, 1)).astype(np.float32))
               for _ in range(K))


def test_step_combine_equals_numpy_transpose_product():
  """With mu = 0 the adapt leaves w unchanged, so one round of the step must give exactly
  W_new = A^T W for every shared variable."""
  K = 4
  A = topology.metropolis(topology.make_graph("ring", K))
  step = _agents(K, lr=0.0, A=A, n_d=1, n_g=1)
  # D has no BatchNorm, so all its weights; G's moving statistics also move with the forward pass
  groups = [(step.discriminators, "weights"), (step.generators, "trainable_variables")]
  before = [[[v.numpy() for v in getattr(m, attr)] for m in ms] for ms, attr in groups]
  step(_real(K, 1))
  for (ms, attr), start in zip(groups, before):
    for j in range(len(start[0])):
      expected = np.tensordot(A.T, np.stack([w[j] for w in start]), axes=1)
      got = np.stack([getattr(m, attr)[j].numpy() for m in ms])
      np.testing.assert_allclose(got, expected, atol=1e-6)


def test_losses_match_equation_3():
  real, fake = tf.constant([0.3, -1.2]), tf.constant([2.0, -0.5])
  D = lambda l: 1 / (1 + np.exp(-l.numpy()))
  J = np.mean(np.log(D(real))) + np.mean(np.log(1 - D(fake)))
  assert float(diffusion.discriminator_loss(real, fake)) == pytest.approx(-J, rel=1e-5)
  assert float(diffusion.generator_loss(fake, "minimax")) == pytest.approx(
      np.mean(np.log(1 - D(fake))), rel=1e-5)
  assert float(diffusion.generator_loss(fake, "nonsaturating")) == pytest.approx(
      -np.mean(np.log(D(fake))), rel=1e-5)


def test_identity_matrix_agents_are_independent_runs():
  """With A = I the network is K single-GAN runs: agent 1 of a pair equals agent 1 alone."""
  pair = _agents(2, seed=3)
  alone = _agents(1, seed=3, agent_ids=[1])
  real = _real(2, 1)
  for _ in range(3):
    pair(real)
    alone((real[1],))
  for a, b in zip(pair.generators[1].weights + pair.discriminators[1].weights,
                  alone.generators[0].weights + alone.discriminators[0].weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
  # and the two agents of the pair really differ (independent inits, data and noise)
  assert not np.allclose(pair.generators[0].weights[0].numpy(), pair.generators[1].weights[0].numpy())


def test_zero_step_size_contracts_disagreement_at_rate_lambda2():
  """mu = 0 leaves only the combine: disagreement shrinks by at most lambda_2^2 per round and
  approaches exactly that rate (A symmetric)."""
  K = 5
  A = topology.metropolis(topology.make_graph("ring", K))
  lam = topology.lambda2(A)
  step = _agents(K, lr=0.0, A=A, n_d=1, n_g=1)
  real = _real(K, 1)
  d = [diffusion.disagreement(step.discriminators)]
  for _ in range(12):
    step(real)
    d.append(diffusion.disagreement(step.discriminators))
  ratios = np.array(d[1:]) / np.array(d[:-1])
  assert d[0] > 0
  assert (ratios <= lam ** 2 + 1e-3).all()
  assert ratios[-1] == pytest.approx(lam ** 2, rel=0.05)


def test_complete_graph_makes_agents_identical():
  K = 3
  step = _agents(K, A=np.full((K, K), 1 / K), n_d=2)
  step(_real(K, 2))
  for model_list in (step.discriminators, step.generators):
    for w0, w1 in zip(model_list[0].weights, model_list[2].weights):  # incl. BN moving stats
      np.testing.assert_allclose(w0.numpy(), w1.numpy(), atol=1e-6)


def test_adam_state_stays_local_and_step_runs():
  K = 2
  step = _agents(K, lr=1e-3, optimizer="adam", A=np.full((K, K), 0.5))
  out = step(_real(K, 1))
  assert out["d_loss"].shape == (K,) and np.isfinite(out["g_loss"].numpy()).all()
  m0 = step.d_optimizers[0].moments[0][0].numpy()
  m1 = step.d_optimizers[1].moments[0][0].numpy()
  assert not np.allclose(m0, m1)  # moments are per agent: different data, different moments


def test_combine_with_a_non_symmetric_matrix_is_w_k_sum_l_a_lk_phi_l():
  """A doubly-stochastic A that is not symmetric tells A from A^T: with mu = 0 one round gives
  w_k = sum_l a_lk phi_l, computed here agent by agent."""
  K = 4
  P = np.roll(np.eye(K), 1, axis=1)                         # a cyclic shift
  A = 0.5 * np.eye(K) + 0.3 * P + 0.2 * P @ P               # rows and columns sum to 1
  assert not np.allclose(A, A.T)
  topology.check_assumption1(A, K)
  step = _agents(K, lr=0.0, A=A, n_d=1, n_g=1)
  before = [[v.numpy() for v in d.weights] for d in step.discriminators]
  step(_real(K, 1))
  told_apart = 0
  for j in range(len(before[0])):
    for k in range(K):
      got = step.discriminators[k].weights[j].numpy()
      expected = sum(A[l, k] * before[l][j] for l in range(K))
      np.testing.assert_allclose(got, expected, atol=1e-6)
      wrong = sum(A[k, l] * before[l][j] for l in range(K))  # A^T would give this for agent k
      if not np.allclose(expected, wrong, atol=1e-4):
        assert not np.allclose(got, wrong, atol=1e-4), (k, j)
        told_apart += 1
  assert told_apart > 0  # some weights do differ between A and A^T, so the check above bites


def test_offline_agent_neither_adapts_nor_mixes():
  """active[r, k] = 0 with e_k in A_t: agent k's weights stay as they were; all ones equals the
  step without the hook."""
  K, rounds = 3, 2
  A = np.full((K, K), 1 / K)
  real = _real(K, 1)
  offline = np.array([[1, 1, 0], [1, 1, 0]], np.float32)
  A_t = np.stack([schedule.degrade(A, np.outer(o == 0, np.ones(K)) > 0) for o in offline])
  step = _agents(K, A=A)
  before = [v.numpy() for v in step.generators[2].weights + step.discriminators[2].weights]
  out = step(real, A_t, offline)
  after = [v.numpy() for v in step.generators[2].weights + step.discriminators[2].weights]
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)
  assert np.isfinite(out["d_loss"].numpy()).all()
  moved = step.discriminators[0].weights[0].numpy()
  assert not np.allclose(moved, _agents(K, A=A).discriminators[0].weights[0].numpy())
  with_hook, without = _agents(K, A=A), _agents(K, A=A)
  with_hook(real, None, np.ones((rounds, K), np.float32))
  without(real)
  for a, b in zip(with_hook.generators[1].weights, without.generators[1].weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_generator_average_is_the_bias_corrected_mean_of_iterates_and_changes_nothing():
  """bar_w(t) = sum_s d^(t-s) w(s) / sum_s d^(t-s) over the weight iterates after each
  iteration; the averaged run's agents train exactly as without it."""
  K, d = 3, 0.8
  A = topology.metropolis_matrix(np.ones((K, K)) - np.eye(K))
  plain, averaged = _agents(K, A=A, n_d=2), _agents(K, A=A, n_d=2, ema_decay=d)
  assert not averaged.ema_generators[0] is averaged.generators[0]
  iterates = []
  for t in range(4):
    real = _real(K, 2, seed=t)
    plain(real)
    averaged(real)
    iterates.append(diffusion.flat_weights(averaged.generators))
  for a, b in zip(diffusion.flat_weights(plain.generators), iterates[-1]):
    np.testing.assert_array_equal(a, b)  # a read-out only: training is unchanged
  weights = d ** np.arange(len(iterates))[::-1]
  expected = np.tensordot(weights / weights.sum(), np.stack(iterates), axes=1)
  got = diffusion.flat_weights(averaged.ema_generators)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  assert not np.allclose(got, iterates[-1], atol=1e-4)  # it is not just the last iterate
  assert "ema_generators" in averaged.trackables() and "ema_generators" not in plain.trackables()


def test_recalibrated_batchnorm_makes_inference_match_training_mode_on_the_same_batch():
  """After recalibration a generator's inference pass on the calibration batch equals its
  training-mode pass (batch statistics): the statistics belong to its own weights."""
  keras.utils.set_random_seed(0)
  g = models.make_generator(8, 0.125)
  z = tf.constant(np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32))
  before = g(z, training=False).numpy()
  models.recalibrate_batchnorm(g, z)
  np.testing.assert_allclose(g(z, training=False).numpy(), g(z, training=True).numpy(),
                             atol=2e-3)
  assert np.abs(before - g(z, training=False).numpy()).max() > 1e-2  # the initial (0, 1) stats


def test_lr_scale_is_a_step_size_factor():
  """lr_scale s with step size mu is the step with step size s * mu (train.lr_decay)."""
  K = 2
  A = np.array([[0.75, 0.25], [0.25, 0.75]])
  half, scaled = _agents(K, lr=0.025, A=A), _agents(K, lr=0.05, A=A)
  for t in range(2):
    half(_real(K, 1, seed=t))
    scaled(_real(K, 1, seed=t), lr_scale=0.5)
  for kind in ("generators", "discriminators"):
    np.testing.assert_allclose(diffusion.flat_weights(getattr(half, kind)),
                               diffusion.flat_weights(getattr(scaled, kind)), atol=1e-6)
  full = _agents(K, lr=0.05, A=A)
  for t in range(2):
    full(_real(K, 1, seed=t))
  assert not np.allclose(diffusion.flat_weights(full.generators),
                         diffusion.flat_weights(half.generators), atol=1e-6)
