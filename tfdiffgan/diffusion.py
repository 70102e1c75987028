"""The compiled step of Algorithm 1: the one place that knows what an iteration is.

One call runs n_d adapt-then-combine rounds over the discriminators, then n_g over the generators,
for all K agents, inside a single ``tf.function``:

  adapt   (eq. 10a): phi_k = w_k - mu * grad J_k(w_k)   every agent, its own batch and noise
  combine (eq. 10b): w_k = sum_l a_lk phi_l              one ``tf.tensordot`` per variable

Local gradients are of eq. (8a) for D_k (J_k^D = -J_k, eq. 3) and of eq. (8b) for G_k, or of the
non-saturating generator loss -log D(G(z)) when asked.
"""

import numpy as np
import tensorflow as tf
import keras

from tfdiffgan.models import combined_variables

LOSSES = ("minimax", "nonsaturating")
OPTIMIZERS = ("sgd", "adam")


def discriminator_loss(real_logits, fake_logits):
  """J_k^D = -E[log D(x) + log(1 - D(G(z)))] (eqs. 3, 8a), with D = sigmoid(logit)."""
  return tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))


def generator_loss(fake_logits, kind):
  """minimax: J_k^G = E[log(1 - D(G(z)))] (eqs. 3, 8b); nonsaturating: -E[log D(G(z))]."""
  if kind == "minimax":
    return -tf.reduce_mean(tf.nn.softplus(fake_logits))
  if kind == "nonsaturating":
    return tf.reduce_mean(tf.nn.softplus(-fake_logits))
  raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}.")


def make_optimizer(name, learning_rate, beta1=0.5):
  if name == "sgd":  # phi = w - mu * grad, exactly eq. (10a)
    return keras.optimizers.SGD(learning_rate=learning_rate)
  if name == "adam":
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta1)
  raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")


def combine(variables_per_agent, A):
  """w_k <- sum_l a_lk phi_l for every shared variable (eq. 10b).

  ``variables_per_agent[k][j]`` is agent k's j-th variable holding phi_k after the adapt step.
  Stacking agents on a leading axis turns the combine into A^T Phi: one tensordot per variable.
  """
  for group in zip(*variables_per_agent):
    phi = tf.stack([tf.convert_to_tensor(v) for v in group])   # [K, ...]
    mixed = tf.tensordot(A, phi, axes=[[0], [0]])        # mixed[k] = sum_l A[l, k] phi[l]
    for k, v in enumerate(group):
      v.assign(mixed[k])


def disagreement(models):
  """Network disagreement (1/K) sum_k ||w_k - w_c||^2 over the trainable weights (Theorem 1)."""
  per_agent = [np.concatenate([np.ravel(v.numpy()) for v in m.trainable_variables])
               for m in models]
  W = np.stack(per_agent).astype(np.float64)
  return float(np.mean(np.sum((W - W.mean(axis=0)) ** 2, axis=1)))


class DiffusionStep:
  """K agents' GANs and the compiled iteration of Algorithm 1 over them.

  Each agent draws its noise from its own ``tf.random.Generator`` so that, with A = I, agent k
  evolves exactly as a single GAN run with the same seed, and so that checkpoints capture every
  random state (a resumed run equals one never stopped).
  """

  def __init__(self, generators, discriminators, d_optimizers, g_optimizers, combination_matrix,
               n_d=5, n_g=1, latent_dim=100, loss="nonsaturating", seed=0, agent_ids=None):
    self.K = len(generators)
    if not (len(discriminators) == len(d_optimizers) == len(g_optimizers) == self.K):
      raise ValueError("one generator, discriminator and pair of optimizers per agent")
    A = np.asarray(combination_matrix, np.float64)
    if A.shape != (self.K, self.K):
      raise ValueError(f"combination matrix {A.shape} does not match {self.K} agents")
    if loss not in LOSSES:
      raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}.")
    self.generators, self.discriminators = list(generators), list(discriminators)
    self.d_optimizers, self.g_optimizers = list(d_optimizers), list(g_optimizers)
    self.n_d, self.n_g, self.latent_dim, self.loss = int(n_d), int(n_g), int(latent_dim), loss
    # A = I (non-cooperative) needs no combine: skip it rather than multiply by the identity.
    self.cooperative = not np.allclose(A, np.eye(self.K))
    self.A = tf.constant(A, tf.float32)
    agent_ids = list(range(self.K)) if agent_ids is None else list(agent_ids)
    self.noise = [tf.random.Generator.from_seed(seed * 7919 + 104729 * (k + 1)) for k in agent_ids]
    self.d_vars = [combined_variables(d) for d in self.discriminators]
    self.g_vars = [combined_variables(g) for g in self.generators]
    for opt, d in zip(self.d_optimizers, self.discriminators):
      opt.build(d.trainable_variables)  # optimizer slots exist before tracing (and checkpointing)
    for opt, g in zip(self.g_optimizers, self.generators):
      opt.build(g.trainable_variables)
    self._compiled = tf.function(self._iteration)

  def trackables(self):
    """Everything a checkpoint must hold to resume exactly."""
    return dict(generators=self.generators, discriminators=self.discriminators,
                d_optimizers=self.d_optimizers, g_optimizers=self.g_optimizers, noise=self.noise)

  def _adapt_discriminator(self, k, real):
    G, D = self.generators[k], self.discriminators[k]
    z = self.noise[k].normal([tf.shape(real)[0], self.latent_dim])
    with tf.GradientTape() as tape:
      fake = G(z, training=True)
      loss = discriminator_loss(D(real, training=True), D(fake, training=True))
    grads = tape.gradient(loss, D.trainable_variables)
    self.d_optimizers[k].apply_gradients(zip(grads, D.trainable_variables))
    return loss

  def _adapt_generator(self, k, batch_size):
    G, D = self.generators[k], self.discriminators[k]
    z = self.noise[k].normal([batch_size, self.latent_dim])
    with tf.GradientTape() as tape:
      loss = generator_loss(D(G(z, training=True), training=True), self.loss)
    grads = tape.gradient(loss, G.trainable_variables)
    self.g_optimizers[k].apply_gradients(zip(grads, G.trainable_variables))
    return loss

  def _iteration(self, real):
    """real: tuple of K tensors [n_d, B, 28, 28, 1]. Returns per-agent losses [K]."""
    batch_size = tf.shape(real[0])[1]
    d_losses = tf.zeros([self.K])
    for r in tf.range(self.n_d):                                   # Algorithm 1, lines 2-7
      d_losses = tf.stack([self._adapt_discriminator(k, real[k][r]) for k in range(self.K)])
      if self.cooperative:
        combine(self.d_vars, self.A)
    g_losses = tf.zeros([self.K])
    for _ in tf.range(self.n_g):                                   # Algorithm 1, lines 8-13
      g_losses = tf.stack([self._adapt_generator(k, batch_size) for k in range(self.K)])
      if self.cooperative:
        combine(self.g_vars, self.A)
    return {"d_loss": d_losses, "g_loss": g_losses}

  def __call__(self, real):
    return self._compiled(tuple(real))
