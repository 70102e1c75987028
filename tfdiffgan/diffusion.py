"""The compiled step of Algorithm 1: the one place that knows what an iteration is.

One call runs n_d adapt-then-combine rounds over the discriminators, then n_g over the generators,
for all K agents, inside a single ``tf.function``:

  adapt   (eq. 10a): phi_k = w_k - mu * grad J_k(w_k)   every agent, its own batch and noise
  combine (eq. 10b): w_k = sum_l a_lk phi_l              one ``tf.tensordot`` per variable

With ``compression`` (compression.ACTC) the combine becomes adapt-compress-then-combine:
q_k <- q_k + zeta C_k(phi_k - q_k), w_k = (1 - gamma) phi_k + gamma sum_l a_lk q_l.

Local gradients are of eq. (8a) for D_k (J_k^D = -J_k, eq. 3) and of eq. (8b) for G_k, or of the
non-saturating generator loss -log D(G(z)) when asked.
"""

import contextlib

import numpy as np
import tensorflow as tf

from tfdiffgan import compression as compression_lib
from tfdiffgan import exchange as exchange_lib
from tfdiffgan import seeds
from tfdiffgan.exchange import mix  # pylint: disable=unused-import (the combine, eq. 10b)
from tfdiffgan.models import combined_variables
from tfdiffgan.placement import Placement
from tfdiffgan.placement import STRATEGIES  # diffusion.STRATEGIES: make_strategy's names

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


def stack_agents(variables):
  return tf.stack([tf.convert_to_tensor(v) for v in variables])


def flat_weights(models, variables=lambda m: m.trainable_variables):
  """[len(models), P] float64: each model's variables concatenated (numpy, for metrics)."""
  return np.stack([np.concatenate([np.ravel(v.numpy()) for v in variables(m)])
                   for m in models]).astype(np.float64)


def disagreement_of(W):
  """Network disagreement (1/K) sum_k ||w_k - w_c||^2 of stacked weights W [K, P] (Theorem 1)."""
  W = np.asarray(W, np.float64)
  return float(np.mean(np.sum((W - W.mean(axis=0)) ** 2, axis=1)))


def disagreement(models):
  """Network disagreement over the models' trainable weights (every agent in this process)."""
  return disagreement_of(flat_weights(models))



def make_strategy(name="default", replicas=1, timeout_seconds=0):
  """The tf.distribute strategy the agents run under.

  default: one replica holds every agent. mirrored: R replicas in this process, on R GPUs when
  present, else on R logical CPU devices carved from the host CPU (before TensorFlow starts).
  multiworker: one replica per worker process, the cluster read from TF_CONFIG; it must be
  created before any other TensorFlow op in the process. Its health check aborts the collectives
  when a peer dies; ``timeout_seconds`` (0: none) also bounds each collective's wait, at the price
  of a TensorFlow thread held per collective until the timeout expires.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multiworker":
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=float(timeout_seconds) or None)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
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


def is_multiworker(strategy):
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def agent_device(strategy, k, num_agents):
  """The device that owns agent k when one process holds every agent over R in-process replicas:
  its replica's, so its weights live where it is adapted. None elsewhere (default device)."""
  R = strategy.num_replicas_in_sync
  if R == 1 or is_multiworker(strategy):
    return None
  return strategy.extended.worker_devices[k // (num_agents // R)]


class DiffusionStep:
  """This process's agents' GANs and the compiled iteration of Algorithm 1 over them.

  Ownership is explicit. ``placement`` spreads the K agents over N workers (one per replica of
  the strategy); this process holds the agents ``agent_ids`` (their models, optimizers and noise),
  and each replica adapts the agents its worker owns, then hands their phi to ``exchange``, which
  returns w for the same agents (eq. 10b):

    default      one process, one replica, every agent; local exchange (tensordot).
    mirrored     one process, R in-process replicas (workers) of K/R agents each; all-gather.
    multiworker  one process per worker, each holding only its K/N agents, their data and noise;
                 all-gather or neighbour-only exchange over TensorFlow's collectives.

  Noise is drawn outside the replicas, each agent from its own ``tf.random.Generator`` seeded by
  its id, so that (i) with A = I agent k evolves exactly as a single GAN run with the same seed,
  (ii) results do not depend on the strategy or placement, and (iii) checkpoints capture every
  random state.
  """

  def __init__(self, generators, discriminators, d_optimizers, g_optimizers, combination_matrix,
               n_d=5, n_g=1, latent_dim=100, loss="nonsaturating", seed=0, agent_ids=None,
               strategy=None, loop_rounds=True, worker=None, exchange="auto", support=None,
               timeout_seconds=0.0, ema_generators=None, ema_decay=0.0, compression=None):
    self.M = len(generators)  # agents held by this process
    if not (len(discriminators) == len(d_optimizers) == len(g_optimizers) == self.M):
      raise ValueError("one generator, discriminator and pair of optimizers per agent")
    A = np.asarray(combination_matrix, np.float64)
    self.K = A.shape[0]
    if A.shape != (self.K, self.K):
      raise ValueError(f"combination matrix {A.shape} is not square")
    if loss not in LOSSES:
      raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}.")
    self.strategy = strategy or tf.distribute.get_strategy()
    self.R = self.strategy.num_replicas_in_sync  # = number of workers in the placement
    self.multiworker = is_multiworker(self.strategy)
    self.placement = Placement(self.K, self.R)
    self.L = self.placement.per_worker
    if self.multiworker:
      self.worker = int(worker or 0)
      if self.M != self.L:
        raise ValueError(f"worker {self.worker} must hold its {self.L} agents, got {self.M}")
      self.first = self.placement.agents_of(self.worker)[0]
    else:
      self.worker = None
      if self.M != self.K:
        raise ValueError(f"combination matrix {A.shape} does not match {self.M} agents")
      self.first = 0
    self.agent_ids = (list(range(self.first, self.first + self.M)) if agent_ids is None
                      else list(agent_ids))
    self.generators, self.discriminators = list(generators), list(discriminators)
    self.d_optimizers, self.g_optimizers = list(d_optimizers), list(g_optimizers)
    self.n_d, self.n_g, self.latent_dim, self.loss = int(n_d), int(n_g), int(latent_dim), loss
    # A = I (non-cooperative) needs no combine: skip it rather than multiply by the identity.
    self.cooperative = not np.allclose(A, np.eye(self.K))
    self.A = tf.constant(A, tf.float32)
    self.static_matrices = tf.tile(self.A[None], [self.n_d + self.n_g, 1, 1])
    self.exchange = exchange_lib.make_exchange(
        exchange_lib.resolve(exchange, self.R, self.multiworker), self.placement, A if support is None else support, timeout_seconds)
    # One replica with the local exchange: rounds as a graph loop, so tracing covers one round,
    # not n_d (trace time and graph size stay flat in n_d). Otherwise unrolled: collectives
    # (all_gather, pairwise gathers) are not supported inside a while loop across replicas.
    self.loop_rounds = loop_rounds and self.exchange.name == "local"
    self.noise = [tf.random.Generator.from_seed(seeds.noise(seed, k))
                  for k in self.agent_ids]
    self.d_vars = [combined_variables(d) for d in self.discriminators]
    self.g_vars = [combined_variables(g) for g in self.generators]
    # Compressed diffusion (ACTC): None runs the plain combine (eq. 10b), today's code path.
    # The weights of each network come first in combined_variables, its BatchNorm statistics after.
    self.n_weights = {"d": len(self.discriminators[0].trainable_variables),
                      "g": len(self.generators[0].trainable_variables)}
    sizes = {net: sum(int(np.prod(v.shape)) for v in vs[0][:self.n_weights[net]])
             for net, vs in (("d", self.d_vars), ("g", self.g_vars))}
    self.bn_sizes = {net: sum(int(np.prod(v.shape)) for v in vs[0][self.n_weights[net]:])
                     for net, vs in (("d", self.d_vars), ("g", self.g_vars))}
    # each worker of this process keeps q for the agents its exchange reaches, on its device
    workers = [self.worker] if self.multiworker else range(self.R)
    holders = {w: (None if self.R == 1 or self.multiworker
                   else self.strategy.extended.worker_devices[w], self.exchange.reach(w))
               for w in workers}
    self.actc = compression_lib.make_actc(compression, seed, self.agent_ids, holders, sizes,
                                          self.placement.owner)
    self.sizes = sizes
    for i in range(self.M):  # optimizer slots exist before tracing, on the agent's device
      device = agent_device(self.strategy, self.first + i, self.K)
      with tf.device(device) if device else contextlib.nullcontext():
        self.d_optimizers[i].build(self.discriminators[i].trainable_variables)
        self.g_optimizers[i].build(self.generators[i].trainable_variables)
    # Generator averaging: a read-out of each agent's own w_k^G, never sent or adapted.
    self.ema_decay = float(ema_decay)
    self.ema_generators = list(ema_generators or [])
    if self.ema_decay and len(self.ema_generators) != self.M:
      raise ValueError("generator averaging needs one averaged copy per generator")
    # Weights only: BatchNorm statistics of an average are recomputed for it at read-out
    # (models.recalibrate_batchnorm), not averaged.
    self.ema_vars = [list(g.trainable_variables) for g in self.ema_generators]
    self.ema_count = tf.Variable(0.0, trainable=False, name="ema_count")
    self._compiled = tf.function(self._iteration)
    self._gather_fns = {}

  def trackables(self):
    """Everything a checkpoint must hold to resume exactly, keyed by global agent id so that a
    checkpoint names agents the same whatever worker wrote it."""
    key = lambda items: {f"agent_{k}": x for k, x in zip(self.agent_ids, items)}
    out = dict(generators=key(self.generators), discriminators=key(self.discriminators),
               d_optimizers=key(self.d_optimizers), g_optimizers=key(self.g_optimizers),
               noise=key(self.noise))
    if self.ema_decay:
      out.update(ema_generators=key(self.ema_generators), ema_count=self.ema_count)
    if self.actc is not None:  # q of every agent in reach, and each own agent's round counter
      out.update(compression=self.actc.trackables())
    return out

  # ------------------------------------------------------------------------------ adapt

  def _adapt_discriminator(self, i, real, z, scale=1.0):
    """phi_k^D = w_k^D - mu grad J_k^D (eqs. 8a, 10a), for the agent in local slot i."""
    G, D = self.generators[i], self.discriminators[i]
    with tf.GradientTape() as tape:
      fake = G(z, training=True)
      loss = discriminator_loss(D(real, training=True), D(fake, training=True))
    grads = tape.gradient(loss, D.trainable_variables)
    self.d_optimizers[i].apply_gradients(zip(grads, D.trainable_variables), scale)
    return loss

  def _adapt_generator(self, i, z, scale=1.0):
    """phi_k^G = w_k^G - mu grad J_k^G (eqs. 8b, 10a)."""
    G, D = self.generators[i], self.discriminators[i]
    with tf.GradientTape() as tape:
      loss = generator_loss(D(G(z, training=True), training=True), self.loss)
    grads = tape.gradient(loss, G.trainable_variables)
    self.g_optimizers[i].apply_gradients(zip(grads, G.trainable_variables), scale)
    return loss

  # ----------------------------------------------------------------------------- replica

  def _own_slots(self, replica):
    """Local slots of the agents the worker ``replica`` owns (a Python int: every replica's
    id is static, so each traces only its own agents)."""
    return [k - self.first for k in self.placement.agents_of(replica)]

  def _round(self, replica, adapt, variables, A, active_row, previous, net=None):
    """One ATC round for this replica's agents: adapt, then combine (eq. 10b) with A [K, K], or
    with compression compress-then-combine (``_compressed_combine``) the network ``net``.
    An agent whose ``active_row`` entry is 0 is switched off: it does not adapt, and reports its
    loss of the previous round (``previous`` [L]); its row and column of A are e_k already."""
    slots = self._own_slots(replica)

    def adapt_or_idle(j, i):
      if active_row is None:
        return adapt(i)
      return tf.cond(active_row[self.first + i] > 0, lambda: adapt(i), lambda: previous[j])

    losses = tf.stack([adapt_or_idle(j, i) for j, i in enumerate(slots)])
    if self.cooperative:
      phi_local = [stack_agents(vs) for vs in zip(*(variables[i] for i in slots))]  # [L, ...]
      if self.actc is None:
        mixed = self.exchange.combine(phi_local, A, replica)
      else:
        mixed = self._compressed_combine(net, phi_local, A, active_row, replica)
      for j, i in enumerate(slots):
        for v, m in zip(variables[i], mixed):
          v.assign(m[j])
    return losses

  def _compressed_combine(self, net, psi_local, A, active_row, replica):
    """ACTC's compress and combine (compression.ACTC.step) on the network's weights, flattened
    to one [L, P] row per agent; its BatchNorm statistics are combined uncompressed (eq. 10b),
    or kept as they are (compression.statistics = local: nothing sent)."""
    n = self.n_weights[net]
    flat, layout = exchange_lib.flatten(psi_local[:n])
    c, P = self.actc.compressor, self.sizes[net]
    if self.exchange.name == "local":   # every agent in this replica: the payload stays here
      send = lambda payload: payload
    else:                               # only the packed payload crosses between workers
      send = lambda payload: compression_lib.from_wire(
          c, self.exchange.gather_rows(compression_lib.to_wire(c, payload), replica), P)
    w = self.actc.step(net, flat, self.placement.agents_of(replica), replica, send,
                       lambda q: self.exchange.mix_reach(A, replica, q), active_row)
    statistics = psi_local[n:]
    if statistics and self.actc.send_statistics:
      statistics = self.exchange.combine(statistics, A, replica)
    return exchange_lib.unflatten(w, layout) + statistics

  def _replica_iteration(self, real, z, matrices, active, scale):
    """real [M, n_d, B, 28, 28, 1], z [M, n_d + n_g, B, latent] for this process's agents,
    matrices [n_d + n_g, K, K], active None or [n_d + n_g, K], scale the step-size factor of
    this iteration; returns this replica's losses."""
    replica = 0
    if self.R > 1:
      replica = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
      if replica is None:
        raise ValueError("this strategy does not give each replica a static id")
      replica = int(replica)
    self.exchange.begin_iteration()
    d_losses = g_losses = tf.zeros([self.L])
    row = lambda r: None if active is None else active[r]
    rounds = tf.range if self.loop_rounds else range
    for r in rounds(self.n_d):                                     # Algorithm 1, lines 2-7
      d_losses = self._round(
          replica, lambda i, r=r: self._adapt_discriminator(i, real[i, r], z[i, r], scale),
          self.d_vars, matrices[r], row(r), d_losses, net="d")
    for r in rounds(self.n_g):                                     # Algorithm 1, lines 8-13
      g_losses = self._round(
          replica, lambda i, r=r: self._adapt_generator(i, z[i, self.n_d + r], scale), self.g_vars,
          matrices[self.n_d + r], row(self.n_d + r), g_losses, net="g")
    if self.actc is not None and self.cooperative:  # what a packing transport would send
      self.exchange.traffic["payload_per_agent"] = sum(
          count * self.actc.row_bytes(self.sizes[net], self.bn_sizes[net])
          for net, count in (("d", self.n_d), ("g", self.n_g)))
    return {"d_loss": d_losses, "g_loss": g_losses}

  def _update_averages(self):
    """Generator averaging (Yazici et al., ICLR 2019) after the iteration's last combine:
    bar_w_k = bias-corrected exponential moving average of the iterates w_k^G(i) (trainable
    weights; the BatchNorm statistics of bar_w_k are recomputed when it is read out). With
    beta_t = d (1 - d^(t-1)) / (1 - d^t), bar_w(t) = sum_s d^(t-s) w(s) / sum_s d^(t-s)
    exactly (bar_w(1) = w(1)): no start-up bias towards the initial weights."""
    d = self.ema_decay
    t = self.ema_count.assign_add(1.0)
    beta = d * (1.0 - d ** (t - 1.0)) / (1.0 - d ** t)
    for ema_vars, g in zip(self.ema_vars, self.generators):
      for e, w in zip(ema_vars, g.trainable_variables):
        e.assign(beta * e + (1.0 - beta) * w)

  def _iteration(self, real, matrices, active, scale):
    real = tf.stack(real)                                          # [M, n_d, B, 28, 28, 1]
    batch_size = tf.shape(real)[2]
    z = tf.stack([g.normal([self.n_d + self.n_g, batch_size, self.latent_dim])
                  for g in self.noise])
    if self.R == 1:
      out = self._replica_iteration(real, z, matrices, active, scale)
    else:
      out = self.strategy.run(self._replica_iteration, args=(real, z, matrices, active, scale))
      out = {key: self.strategy.gather(value, axis=0) for key, value in out.items()}
    if self.ema_decay:
      with tf.control_dependencies(tf.nest.flatten(out)):
        self._update_averages()
    return out

  def __call__(self, real, matrices=None, active=None, lr_scale=1.0):
    """real: one tensor [n_d, B, 28, 28, 1] per agent of this process; matrices: optional
    [n_d + n_g, K, K], one combination matrix per round (time-varying schedules), else the
    step's A every round; active: optional [n_d + n_g, K], 0 where an agent is offline that
    round; lr_scale: this iteration's factor on every agent's step size (a decaying mu_i).
    Returns every agent's losses [K] (gathered from all workers)."""
    if matrices is None:
      matrices = self.static_matrices
    if active is not None:
      active = tf.convert_to_tensor(active, tf.float32)
    return self._compiled(tuple(real), tf.convert_to_tensor(matrices, tf.float32), active,
                          tf.constant(lr_scale, tf.float32))

  # ------------------------------------------------------------------- network read-outs

  def gather_local(self, values):
    """Stacks a small per-worker array (e.g. one flag per local agent) over all workers, in
    worker order, on every worker: a collective under multiworker, the array itself otherwise."""
    values = np.asarray(values)
    if not self.multiworker:
      return values
    if values.dtype == bool:  # collectives move numbers
      return self.gather_local(values.astype(np.int32)).astype(bool)
    key = ("local", values.shape, values.dtype.str)
    if key not in self._gather_fns:
      def replica_fn(x):
        return tf.distribute.get_replica_context().all_gather(x[None], axis=0)
      self._gather_fns[key] = tf.function(lambda x: self.strategy.run(replica_fn, args=(x,)))
    out = self._gather_fns[key](tf.constant(values))
    return np.asarray(self.strategy.experimental_local_results(out)[0])

  def gather_weights(self, kind, variables="trainable"):
    """Every agent's weights of ``kind`` ('generators' or 'discriminators') as a float64 array
    [K, P], on every worker: in one process straight from the models, across workers by one
    collective all-gather (every worker must call it at the same point)."""
    models = getattr(self, kind)
    pick = (lambda m: m.trainable_variables) if variables == "trainable" else combined_variables
    if not self.multiworker:
      return flat_weights(models, pick)
    key = (kind, variables)
    if key not in self._gather_fns:
      def replica_fn():
        flat = tf.stack([tf.concat([tf.reshape(v, [-1]) for v in pick(m)], 0) for m in models])
        return tf.distribute.get_replica_context().all_gather(flat, axis=0)
      self._gather_fns[key] = tf.function(lambda: self.strategy.run(replica_fn))
    out = self._gather_fns[key]()
    return np.asarray(self.strategy.experimental_local_results(out)[0], np.float64)
