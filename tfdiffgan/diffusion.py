"""The compiled step of Algorithm 1: the one place that knows what an iteration is.

One call runs n_d adapt-then-combine rounds over the discriminators, then n_g over the generators,
for all K agents, inside a single ``tf.function``:

  adapt   (eq. 10a): phi_k = w_k - mu * grad J_k(w_k)   every agent, its own batch and noise
  combine (eq. 10b): w_k = sum_l a_lk phi_l              one ``tf.tensordot`` per variable

Local gradients are of eq. (8a) for D_k (J_k^D = -J_k, eq. 3) and of eq. (8b) for G_k, or of the
non-saturating generator loss -log D(G(z)) when asked.
"""

import contextlib

import numpy as np
import tensorflow as tf

from tfdiffgan.models import combined_variables

LOSSES = ("minimax", "nonsaturating")


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


def mix(A_columns, phi):
  """Combine step (eq. 10b): w_k = sum_l a_lk phi_l for the agents whose columns of A are given.

  phi stacks all K agents' copies of one variable on a leading axis, [K, ...]; A_columns is
  [K, L]; the result is [L, ...]. With all K columns this is A^T Phi, one tensordot per variable.
  """
  return tf.tensordot(A_columns, phi, axes=[[0], [0]])


def stack_agents(variables):
  return tf.stack([tf.convert_to_tensor(v) for v in variables])


def disagreement(models):
  """Network disagreement (1/K) sum_k ||w_k - w_c||^2 over the trainable weights (Theorem 1)."""
  per_agent = [np.concatenate([np.ravel(v.numpy()) for v in m.trainable_variables])
               for m in models]
  W = np.stack(per_agent).astype(np.float64)
  return float(np.mean(np.sum((W - W.mean(axis=0)) ** 2, axis=1)))


STRATEGIES = ("default", "mirrored")


def make_strategy(name="default", replicas=1):
  """The tf.distribute strategy the agents run under.

  default: one replica holds every agent. mirrored: R replicas on R GPUs when present, else on R
  logical CPU devices carved from the host CPU (which must happen before TensorFlow starts).
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name != "mirrored":
    raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}.")
  if len(tf.config.list_physical_devices("GPU")) >= replicas:  # does not start the runtime
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([d.name for d in gpus[:replicas]])
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
  except RuntimeError:
    pass  # TensorFlow already started: use the logical devices it has
  cpus = tf.config.list_logical_devices("CPU")
  if len(cpus) < replicas:
    raise ValueError(f"the mirrored strategy needs {replicas} logical CPU devices but TensorFlow "
                     f"already started with {len(cpus)}; start a fresh process (bin/train does).")
  return tf.distribute.MirroredStrategy([d.name for d in cpus[:replicas]])


def agent_device(strategy, k, num_agents):
  """The device that owns agent k: its replica's, so its weights live where it is adapted."""
  R = strategy.num_replicas_in_sync
  return strategy.extended.worker_devices[k // (num_agents // R)] if R > 1 else None


class DiffusionStep:
  """K agents' GANs and the compiled iteration of Algorithm 1 over them, under a tf.distribute
  strategy.

  Default strategy: one replica holds all K agents. MirroredStrategy over R devices: replica q
  owns agents q*L .. q*L+L-1 (L = K/R), whose models were built on its device; it adapts them,
  all-gathers phi from every replica, and combines its own agents with its columns of A. The same
  replica function serves both (with R = 1 the gather is the identity).

  Noise is drawn outside the replicas, each agent from its own ``tf.random.Generator``, so that
  (i) with A = I agent k evolves exactly as a single GAN run with the same seed, (ii) results do
  not depend on the strategy, and (iii) checkpoints capture every random state.
  """

  def __init__(self, generators, discriminators, d_optimizers, g_optimizers, combination_matrix,
               n_d=5, n_g=1, latent_dim=100, loss="nonsaturating", seed=0, agent_ids=None,
               strategy=None, loop_rounds=True):
    self.K = len(generators)
    self.loop_rounds = loop_rounds
    if not (len(discriminators) == len(d_optimizers) == len(g_optimizers) == self.K):
      raise ValueError("one generator, discriminator and pair of optimizers per agent")
    A = np.asarray(combination_matrix, np.float64)
    if A.shape != (self.K, self.K):
      raise ValueError(f"combination matrix {A.shape} does not match {self.K} agents")
    if loss not in LOSSES:
      raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}.")
    self.strategy = strategy or tf.distribute.get_strategy()
    self.R = self.strategy.num_replicas_in_sync
    if self.K % self.R:
      raise ValueError(f"{self.K} agents cannot be spread evenly over {self.R} replicas; choose "
                       "a number of replicas that divides num_agents.")
    self.L = self.K // self.R
    self.groups = [list(range(q * self.L, (q + 1) * self.L)) for q in range(self.R)]
    self.generators, self.discriminators = list(generators), list(discriminators)
    self.d_optimizers, self.g_optimizers = list(d_optimizers), list(g_optimizers)
    self.n_d, self.n_g, self.latent_dim, self.loss = int(n_d), int(n_g), int(latent_dim), loss
    # A = I (non-cooperative) needs no combine: skip it rather than multiply by the identity.
    self.cooperative = not np.allclose(A, np.eye(self.K))
    self.A = tf.constant(A, tf.float32)
    self.static_matrices = tf.tile(self.A[None], [self.n_d + self.n_g, 1, 1])
    agent_ids = list(range(self.K)) if agent_ids is None else list(agent_ids)
    self.noise = [tf.random.Generator.from_seed(seed * 7919 + 104729 * (k + 1)) for k in agent_ids]
    self.d_vars = [combined_variables(d) for d in self.discriminators]
    self.g_vars = [combined_variables(g) for g in self.generators]
    for k in range(self.K):  # optimizer slots exist before tracing, on the agent's device
      device = agent_device(self.strategy, k, self.K)
      with tf.device(device) if device else contextlib.nullcontext():
        self.d_optimizers[k].build(self.discriminators[k].trainable_variables)
        self.g_optimizers[k].build(self.generators[k].trainable_variables)
    self._compiled = tf.function(self._iteration)

  def trackables(self):
    """Everything a checkpoint must hold to resume exactly."""
    return dict(generators=self.generators, discriminators=self.discriminators,
                d_optimizers=self.d_optimizers, g_optimizers=self.g_optimizers, noise=self.noise)

  # ------------------------------------------------------------------------------ adapt

  def _adapt_discriminator(self, k, real, z):
    """phi_k^D = w_k^D - mu grad J_k^D (eqs. 8a, 10a)."""
    G, D = self.generators[k], self.discriminators[k]
    with tf.GradientTape() as tape:
      fake = G(z, training=True)
      loss = discriminator_loss(D(real, training=True), D(fake, training=True))
    grads = tape.gradient(loss, D.trainable_variables)
    self.d_optimizers[k].apply_gradients(zip(grads, D.trainable_variables))
    return loss

  def _adapt_generator(self, k, z):
    """phi_k^G = w_k^G - mu grad J_k^G (eqs. 8b, 10a)."""
    G, D = self.generators[k], self.discriminators[k]
    with tf.GradientTape() as tape:
      loss = generator_loss(D(G(z, training=True), training=True), self.loss)
    grads = tape.gradient(loss, G.trainable_variables)
    self.g_optimizers[k].apply_gradients(zip(grads, G.trainable_variables))
    return loss

  # ----------------------------------------------------------------------------- replica

  def _on_own_group(self, replica, fn):
    """Runs fn(q) for this replica's group q: a switch over groups, since every replica traces
    the same function but must touch only the agents (and devices) it owns."""
    if self.R == 1:
      return fn(0)
    return tf.switch_case(replica, [lambda q=q: fn(q) for q in range(self.R)])

  def _round(self, replica, adapt, variables, A, active=None, previous=None):
    """One ATC round for this replica's agents: adapt, then combine (eq. 10b) with A [K, K].
    active [K] (optional): an agent with 0 is offline and does not adapt; it reports its
    previous loss (``previous`` [L])."""
    def adapt_group(q):
      losses = tf.stack([adapt(k) if active is None else
                         tf.cond(active[k] > 0, lambda k=k: adapt(k), lambda j=j: previous[j])
                         for j, k in enumerate(self.groups[q])])
      if not self.cooperative:
        return losses, []
      return losses, [stack_agents(vs) for vs in zip(*(variables[k] for k in self.groups[q]))]

    losses, phi_local = self._on_own_group(replica, adapt_group)
    if self.cooperative:
      ctx = tf.distribute.get_replica_context()
      phi = [ctx.all_gather(p, axis=0) for p in phi_local] if self.R > 1 else phi_local  # [K,..]
      own = tf.gather(A, replica * self.L + tf.range(self.L), axis=1)                    # [K, L]
      mixed = [mix(own, p) for p in phi]                                              # [L, ...]

      def assign_group(q):
        for j, k in enumerate(self.groups[q]):
          for v, m in zip(variables[k], mixed):
            v.assign(m[j])
        return tf.constant(0)

      self._on_own_group(replica, assign_group)
    return losses

  def _replica_iteration(self, real, z, matrices, active=None):
    """real [K, n_d, B, 28, 28, 1], z [K, n_d + n_g, B, latent], matrices [n_d + n_g, K, K],
    active [n_d + n_g, K] or None (every replica sees all, reads only its own agents' slices);
    returns its losses [L]."""
    on = lambda r: None if active is None else active[r]
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    replica = tf.cast(replica, tf.int32) if self.R > 1 else 0
    d_losses = g_losses = tf.zeros([self.L])
    # One replica: rounds as a graph loop, so tracing covers one round, not n_d (trace time and
    # graph size stay flat in n_d). Several replicas: unrolled, as collectives (all_gather)
    # inside a while loop are not supported across MirroredStrategy replicas.
    rounds = tf.range if (self.R == 1 and self.loop_rounds) else range
    for r in rounds(self.n_d):                                     # Algorithm 1, lines 2-7
      d_losses = self._round(
          replica, lambda k, r=r: self._adapt_discriminator(k, real[k, r], z[k, r]),
          self.d_vars, matrices[r], on(r), d_losses)
    for r in rounds(self.n_g):                                     # Algorithm 1, lines 8-13
      g_losses = self._round(
          replica, lambda k, r=r: self._adapt_generator(k, z[k, self.n_d + r]), self.g_vars,
          matrices[self.n_d + r], on(self.n_d + r), g_losses)
    return {"d_loss": d_losses, "g_loss": g_losses}

  def _iteration(self, real, matrices, active=None):
    real = tf.stack(real)                                          # [K, n_d, B, 28, 28, 1]
    batch_size = tf.shape(real)[2]
    z = tf.stack([g.normal([self.n_d + self.n_g, batch_size, self.latent_dim])
                  for g in self.noise])
    if self.R == 1:
      return self._replica_iteration(real, z, matrices, active)
    out = self.strategy.run(self._replica_iteration, args=(real, z, matrices, active))
    return {key: self.strategy.gather(value, axis=0) for key, value in out.items()}

  def __call__(self, real, matrices=None, active=None):
    """real: K tensors [n_d, B, 28, 28, 1], one per agent; matrices: optional [n_d + n_g, K, K],
    one combination matrix per round (time-varying schedules: fusion center, gossip), else the
    step's A every round; active: optional float32 [n_d + n_g, K], 0 where an agent is offline
    in a round (it does not adapt; its row and column of that round's A should be e_k).
    Returns per-agent losses [K]."""
    if matrices is None:
      matrices = self.static_matrices
    if active is None:  # the graph of every run without dropouts is unchanged
      return self._compiled(tuple(real), tf.convert_to_tensor(matrices, tf.float32))
    return self._compiled(tuple(real), tf.convert_to_tensor(matrices, tf.float32),
                          tf.convert_to_tensor(active, tf.float32))
