"""The way most people would first write Algorithm 1: a reference for the benchmark only.

Per-agent tf.functions called from a Python loop, the combine done in numpy on get_weights().
Same arithmetic as tfdiffgan.diffusion.DiffusionStep, so the benchmark compares like with like.
"""

import numpy as np
import tensorflow as tf

from tfdiffgan import diffusion
from tfdiffgan import seeds
from tfdiffgan.models import combined_variables


class NaiveStep:

  def __init__(self, generators, discriminators, d_optimizers, g_optimizers, A, n_d=5, n_g=1,
               latent_dim=100, loss="nonsaturating", seed=0):
    self.K = len(generators)
    self.A = np.asarray(A, np.float32)
    self.n_d, self.n_g, self.latent_dim, self.loss = n_d, n_g, latent_dim, loss
    self.generators, self.discriminators = generators, discriminators
    self.d_opt, self.g_opt = d_optimizers, g_optimizers
    self.noise = [tf.random.Generator.from_seed(seeds.noise(seed, k))
                  for k in range(self.K)]
    self.d_fn = [tf.function(lambda real, z, k=k: self._d(k, real, z)) for k in range(self.K)]
    self.g_fn = [tf.function(lambda z, k=k: self._g(k, z)) for k in range(self.K)]

  def _d(self, k, real, z):
    G, D = self.generators[k], self.discriminators[k]
    with tf.GradientTape() as tape:
      loss = diffusion.discriminator_loss(D(real, training=True), D(G(z, training=True), training=True))
    grads = tape.gradient(loss, D.trainable_variables)
    self.d_opt[k].apply_gradients(zip(grads, D.trainable_variables))
    return loss

  def _g(self, k, z):
    G, D = self.generators[k], self.discriminators[k]
    with tf.GradientTape() as tape:
      loss = diffusion.generator_loss(D(G(z, training=True), training=True), self.loss)
    grads = tape.gradient(loss, G.trainable_variables)
    self.g_opt[k].apply_gradients(zip(grads, G.trainable_variables))
    return loss

  def _combine(self, models):
    weights = [[np.asarray(v) for v in combined_variables(m)] for m in models]
    for j in range(len(weights[0])):
      mixed = np.tensordot(self.A, np.stack([w[j] for w in weights]), axes=[[0], [0]])
      for k, m in enumerate(models):
        combined_variables(m)[j].assign(mixed[k])

  def __call__(self, real):
    batch = int(real[0].shape[1])
    z = [g.normal([self.n_d + self.n_g, batch, self.latent_dim]) for g in self.noise]
    for r in range(self.n_d):
      d = [self.d_fn[k](real[k][r], z[k][r]) for k in range(self.K)]
      self._combine(self.discriminators)
    for r in range(self.n_g):
      g = [self.g_fn[k](z[k][self.n_d + r]) for k in range(self.K)]
      self._combine(self.generators)
    return {"d_loss": np.array([float(x) for x in d]), "g_loss": np.array([float(x) for x in g])}
