"""train_and_evaluate(config, workdir): the loop around the compiled step of Algorithm 1.

Writes, under ``workdir``: config.json (resolved), checkpoints/ (resumable), TensorBoard events,
samples/agent_K.png, export/agent_K/ (SavedModel per generator) and run.json (the run's record).

With ``train.strategy=multiworker`` each worker process runs this same loop over the agents it
owns (``placement``): every worker checkpoints its own agents under checkpoints/worker-N/, and
worker 0, the chief, gathers losses, disagreement and generators from all of them and alone
writes the shared files.
"""

import contextlib
import glob
import json
import os
import time

import numpy as np
import tensorflow as tf
import keras

from tfdiffgan import config as config_lib
from tfdiffgan import data as data_lib
from tfdiffgan import diffusion
from tfdiffgan import export as export_lib
from tfdiffgan import metrics
from tfdiffgan import models
from tfdiffgan import optim
from tfdiffgan import placement as placement_lib
from tfdiffgan import topology
from tfdiffgan import workdir as workdir_lib
from tfdiffgan.errors import TrainingError


def log(fmt, *args):
  """Progress lines on stdout; TensorFlow's own INFO chatter stays off."""
  print("[tfdiffgan] " + (fmt % args if args else fmt), flush=True)


# What a collective raises when a peer worker is gone: its health check aborts (Unavailable,
# Cancelled, Aborted) or the collective times out (DeadlineExceeded).
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.CancelledError, tf.errors.AbortedError)


def build_network(config, num_data_agents):
  """The mode's combination schedule, its (mean) matrix A and the number of agents, with the
  topology's random link failures and agent dropouts (none by default)."""
  schedule, A, K = base_network(config, num_data_agents)
  if K == 1:
    return schedule, A, K
  schedule, A = topology.with_faults(schedule, A, config.topology, seed=config.seed)
  return schedule, A, K


def base_network(config, num_data_agents):
  """The mode's combination schedule, its (mean) matrix A and the number of agents.

  diffusion: A from the topology every round; noncooperative: A = I; centralized: one GAN on the
  union of the shards; fusion: the network mean every topology.fusion_period rounds (FedGAN);
  gossip: random pairwise averaging over the graph's edges.
  """
  mode, K = config.train.mode, num_data_agents
  rounds = config.train.n_d + config.train.n_g
  t = config.topology
  if mode == "centralized":
    return topology.StaticSchedule(np.ones((1, 1)), rounds), np.ones((1, 1)), 1
  if mode == "noncooperative":
    return topology.StaticSchedule(np.eye(K), rounds), np.eye(K), K
  if mode == "fusion":
    p = t.fusion_period
    A = np.full((K, K), 1.0 / (K * p)) + (1 - 1.0 / p) * np.eye(K)  # the mean over a period
    return topology.FusionSchedule(K, p, rounds), A, K
  if mode == "gossip":
    graph = topology.make_graph(t.graph, K, seed=config.seed, p=t.p, k=t.k, edge_list=t.edge_list)
    schedule = topology.GossipSchedule(graph, rounds, seed=config.seed)
    A = np.mean([schedule.matrices(i) for i in range(200)], axis=(0, 1))  # E[A_t], estimated
    return schedule, A, K
  A = topology.combination_matrix(t, K, seed=config.seed)
  return topology.StaticSchedule(A, rounds), A, K


def discriminator_width(config):
  """D's width multiplier: model.d_width, or model.width when that is 0."""
  return config.model.d_width or config.model.width


def make_generator(config, k):
  """Agent k's generator, initialised from its own seed (the same whoever builds it)."""
  keras.utils.set_random_seed(config.seed * 1000 + k)
  return models.make_generator(config.model.latent_dim, config.model.width, name=f"generator_{k}")


def recalibrate(config, generators, num_samples=2048):
  """The averaged generators' own BatchNorm statistics, from a fixed noise batch (the same for
  every agent and every read-out, so a read-out is a function of the averaged weights alone)."""
  z = np.random.default_rng(config.seed + 2).normal(
      size=(num_samples, config.model.latent_dim)).astype(np.float32)
  for g in generators:
    models.recalibrate_batchnorm(g, z)
  return generators


def load_worker_generators(config, workdir):
  """Every agent's generator of a multiworker workdir, in one process, from the checkpoints its
  workers wrote under checkpoints/worker-N/ (they name agents by global id) at the latest
  iteration all of them hold: the averaged generators when train.ema_decay is on."""
  dirs = sorted(glob.glob(os.path.join(workdir, "checkpoints", "worker-*")))
  steps = [{int(p.rsplit("-", 1)[1]) for p in
            (tf.train.get_checkpoint_state(d).all_model_checkpoint_paths
             if tf.train.get_checkpoint_state(d) else [])} for d in dirs]
  common = set.intersection(*steps) if steps else set()
  if not common:
    from tfdiffgan.export import ExportError  # pylint: disable=g-import-not-at-top
    raise ExportError(f"{workdir} has neither exports nor a checkpoint that every worker saved; "
                      "relaunch its training to finish it.")
  gens = [make_generator(config, k) for k in range(config.num_agents)]
  kind = "ema_generators" if config.train.ema_decay else "generators"
  reader = tf.train.Checkpoint(**{kind: {f"agent_{k}": g for k, g in enumerate(gens)}})
  for d in dirs:
    reader.read(os.path.join(d, f"ckpt-{max(common)}")).expect_partial()
  return recalibrate(config, gens) if config.train.ema_decay else gens


def make_agents(config, num_agents, A, strategy, agent_ids=None, worker=None, support=None):
  """The agents this process owns (``agent_ids``, default all K): generator, discriminator and
  optimizers, each agent seeded on its own so agent k's initial weights depend neither on K nor
  on where or in what order it is built (non-cooperative agents are then exactly independent
  runs), each built on the device of the replica that owns it."""
  agent_ids = list(range(num_agents)) if agent_ids is None else list(agent_ids)
  gens, discs, d_opts, g_opts, emas = [], [], [], [], []
  for k in agent_ids:
    device = diffusion.agent_device(strategy, k, num_agents)
    with tf.device(device) if device else contextlib.nullcontext():
      gens.append(make_generator(config, k))
      if config.train.ema_decay:  # the average starts as a copy of the initial weights
        emas.append(make_generator(config, k))
      discs.append(models.make_discriminator(discriminator_width(config),
                                             name=f"discriminator_{k}",
                                             minibatch_std=config.model.minibatch_std,
                                             pack=config.model.pack))
      d_opts.append(optim.make_optimizer(config.train.optimizer, config.train.learning_rate,
                                         config.train.beta1, config.train.clip_norm))
      g_opts.append(optim.make_optimizer(config.train.optimizer, config.train.learning_rate,
                                         config.train.beta1, config.train.clip_norm))
  return diffusion.DiffusionStep(gens, discs, d_opts, g_opts, A, n_d=config.train.n_d,
                                 n_g=config.train.n_g, latent_dim=config.model.latent_dim,
                                 loss=config.train.loss, seed=config.seed, strategy=strategy,
                                 agent_ids=agent_ids, worker=worker, exchange=config.train.exchange,
                                 support=support, timeout_seconds=config.train.collective_timeout,
                                 ema_generators=emas, ema_decay=config.train.ema_decay)


def load_shards(config, agent_ids=None, verbose=True):
  """The private image shards (uint8) of the agents ``agent_ids`` (default: all), every agent's
  class counts, and the dataset. A worker partitions the whole dataset the same way as every
  other worker, then keeps only its own agents' images."""
  arrays = data_lib.load_dataset(config.data.name, config.data.source_dir, verbose=verbose)
  parts = data_lib.partition(arrays["y_train"], config.num_agents, config.data.partition,
                             seed=config.seed, classes=config.data.classes,
                             alpha=config.data.dirichlet_alpha)
  agent_ids = range(len(parts)) if agent_ids is None else agent_ids
  shards = [arrays["x_train"][parts[k]] for k in agent_ids]
  labels = [np.bincount(arrays["y_train"][p], minlength=data_lib.NUM_CLASSES) for p in parts]
  return shards, labels, arrays


def _fmt_time(seconds):
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


class Trainer:
  """Holds one run: its agents, checkpoint, summaries; ``run()`` trains to config.train.iterations."""

  def __init__(self, config, workdir, read_only=False):
    """read_only: only restore (bin/evaluate): writes no config.json and no event file."""
    config_lib.validate(config)
    # multiworker: the strategy must exist before any other TensorFlow op in the process.
    self.strategy = diffusion.make_strategy(config.train.strategy, config.train.replicas,
                                            config.train.collective_timeout)
    self.multiworker = diffusion.is_multiworker(self.strategy)
    self.num_workers, self.worker = 1, None
    if self.multiworker:
      self.num_workers, self.worker = placement_lib.cluster_from_env()
    self.chief = not self.worker  # worker 0 (or the only process) writes the shared files
    config_lib.check_resume(workdir, config)
    self.config, self.workdir = config, workdir
    tf.random.set_seed(config.seed)

    K = 1 if config.train.mode == "centralized" else config.num_agents
    self.placement = placement_lib.Placement(K, self.num_workers)
    self.agent_ids = (self.placement.agents_of(self.worker) if self.multiworker
                      else list(range(K)))
    shards, self.shard_labels, self.arrays = load_shards(
        config, None if config.train.mode == "centralized" else self.agent_ids,
        verbose=self.chief)
    self.schedule, self.A, self.K = build_network(config, config.num_agents)
    self.lambda2 = topology.rate(self.schedule, self.A)
    self.batch_size = config.data.batch_size
    if config.train.mode == "centralized":  # same samples per iteration as K agents of batch B
      shards, self.batch_size = [np.concatenate(shards)], config.data.batch_size * config.num_agents
    self.shards = shards
    data_lib.check_shards(shards, self.batch_size)

    self.step = make_agents(config, self.K, self.A, self.strategy, self.agent_ids, self.worker,
                            support=self.schedule.support())
    self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
    self.checkpoint = tf.train.Checkpoint(iteration=self.iteration, **self.step.trackables())
    self.checkpoint_dir = os.path.join(workdir, "checkpoints")
    if self.multiworker:
      self.checkpoint_dir = os.path.join(self.checkpoint_dir, f"worker-{self.worker}")
    self._check_placement()
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir,
                                              max_to_keep=config.train.keep_checkpoints)
    resume = self._resume_point()
    if resume:
      try:
        self.checkpoint.restore(resume).assert_existing_objects_matched()
      except AssertionError as e:  # e.g. agents stored by position (before they were by id)
        raise TrainingError(
            f"{resume} does not hold this run's agents by id ({str(e).splitlines()[0][:160]}); "
            "it was written by an older tfdiffgan or another layout. Train in a new --workdir "
            "(its exports, if any, still load in bin/evaluate and bin/generate).") from e
      log("resumed %s at iteration %d", resume, int(self.iteration.numpy()))
      self.check_finite_weights(int(self.iteration.numpy()), restored=True)
    elif config.train.init_from:
      self.warm_start(config.train.init_from)
    # Written only once the run has built: a bad config must not leave a config.json behind
    # that would then refuse the corrected one as an incompatible resume.
    if self.chief and not read_only:
      config_lib.write(workdir, config)
      self._write_placement()
    # TensorBoard's writer: made on first use on the chief, a no-op on the other workers
    self._writer = tf.summary.create_noop_writer() if read_only or not self.chief else None
    self._evaluator = None
    self._shadow = {}          # chief, multiworker: generators of other workers' agents
    self._network_gens = {}    # kind -> (iteration, generators) last gathered
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
    d_params, g_params = count(self.step.discriminators[0]), count(self.step.generators[0])
    self.params_per_round = np.array([d_params] * config.train.n_d + [g_params] * config.train.n_g,
                                     np.float64)  # one message = one agent's D or G weights
    self.fixed_noise = np.random.default_rng(config.seed).normal(
        size=(100, config.model.latent_dim)).astype(np.float32)

  # ------------------------------------------------------------------------ placement

  def _placement_record(self):
    return {"processes": self.num_workers, **self.placement.to_dict()}

  def _check_placement(self):
    """Refuses a relaunch whose workers would not find their agents' checkpoints."""
    path = os.path.join(self.workdir, "checkpoints", "placement.json")
    if not os.path.exists(path):
      return
    with open(path) as f:
      saved = json.load(f)
    if saved.get("processes") != self.num_workers:
      how = (f"bin/launch --workers={saved['processes']} -- bin/train ... "
             "--config.train.strategy=multiworker" if saved.get("processes", 1) > 1
             else "one process (--config.train.strategy=default or mirrored)")
      raise config_lib.ConfigError(
          f"{self.workdir} was trained by {saved.get('processes')} process(es), each "
          f"checkpointing its own agents; this launch has {self.num_workers}. Resume it with "
          f"{how}, or train in a new --workdir.")

  def _write_placement(self):
    os.makedirs(os.path.join(self.workdir, "checkpoints"), exist_ok=True)
    path = os.path.join(self.workdir, "checkpoints", "placement.json")
    with open(path + ".tmp", "w") as f:
      json.dump(self._placement_record(), f, indent=2)
    os.replace(path + ".tmp", path)

  def _resume_point(self):
    """The checkpoint to resume from: the latest one, or with several workers the latest
    iteration that every worker has saved (a worker killed while saving may lag one behind)."""
    if not self.multiworker:
      return self.manager.latest_checkpoint
    keep = self.config.train.keep_checkpoints + 1
    mine = [int(p.rsplit("-", 1)[1]) for p in self.manager.checkpoints][-keep:]
    mine = np.array(mine + [-1] * (keep - len(mine)), np.int64)
    every = self.step.gather_local(mine)  # [workers, keep]
    common = set(every[0].tolist())
    for row in every[1:]:
      common &= set(row.tolist())
    common.discard(-1)
    if common:
      return os.path.join(self.checkpoint_dir, f"ckpt-{max(common)}")
    if (every >= 0).any():
      raise TrainingError(
          f"the workers of {self.workdir} hold no checkpoint of a common iteration (saved: "
          + "; ".join(f"worker {w}: {[int(x) for x in row if x >= 0]}"
                      for w, row in enumerate(every))
          + "); a checkpoint directory was removed or the run crashed while saving. Train in a "
          "new --workdir.")
    return None

  @property
  def writer(self):
    """TensorBoard's writer, made on first use: a rerun with nothing to do adds no event file."""
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self.workdir)
    return self._writer

  def warm_start(self, source):
    """Loads every agent's G and D weights (BatchNorm statistics included) from another run's
    checkpoint; optimizer state, noise streams and the iteration count start afresh. Lets a
    sweep start all its runs from one trained state (the Theorem 1 check)."""
    path = source
    if os.path.isdir(source):
      path = tf.train.latest_checkpoint(os.path.join(source, "checkpoints"))
      if path is None:
        raise config_lib.ConfigError(f"train.init_from={source!r} holds no checkpoint under "
                                     "checkpoints/; train that run first.")
    trackables = self.step.trackables()
    weights = tf.train.Checkpoint(generators=trackables["generators"],
                                  discriminators=trackables["discriminators"])
    try:
      weights.read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise config_lib.ConfigError(
          f"train.init_from={source!r} does not fit this run ({str(e).splitlines()[0][:200]}); "
          "it needs the same num_agents, model.width, model.d_width, model.minibatch_std, "
          "model.pack and model.latent_dim.") from e
    log("warm start: weights of %d agents from %s", self.K, path)

  # --------------------------------------------------------------------------------- outputs

  def describe(self):
    c = self.config
    if self.multiworker:
      log("worker %d of %d: agents %s", self.worker, self.num_workers, self.agent_ids)
    if not self.chief:
      return
    model = (f"width={c.model.width} (D {discriminator_width(c)}) optimizer={c.train.optimizer} "
             f"mu={c.train.learning_rate} n_d={c.train.n_d} n_g={c.train.n_g}")
    if c.train.mode == "centralized":  # one GAN: no graph, no combine, the shards pooled
      log("mode=centralized: one GAN on the union of %d shards (%d images, batch %d) data=%s %s",
          c.num_agents, len(self.shards[0]), self.batch_size, c.data.name, model)
      return
    log("mode=%s K=%d graph=%s rule=%s lambda_2=%.4f data=%s/%s %s strategy=%s (%d worker(s), "
        "%s exchange)", c.train.mode, self.K, c.topology.graph, c.topology.rule, self.lambda2,
        c.data.name, c.data.partition, model, c.train.strategy,
        self.strategy.num_replicas_in_sync, self.step.exchange.name)
    for k, counts in enumerate(self.shard_labels):
      log("agent %d: %d images, classes %s", k, int(counts.sum()),
          [int(c) for c in np.flatnonzero(counts)])

  def network_generators(self, averaged=None):
    """Every agent's generator, on the chief; None on the other workers: the averaged one when
    train.ema_decay is on (``averaged`` None: the read-out), else the iterate w_k^G. With
    several worker processes the chief gathers the weights (BatchNorm statistics included) into
    copies of the other workers' models: a collective, so every worker calls it at the same
    point of the loop."""
    averaged = bool(self.step.ema_decay) if averaged is None else averaged
    kind = "ema_generators" if averaged else "generators"
    done = int(self.iteration.numpy())
    cached = self._network_gens.get(kind)
    if cached and cached[0] == done:
      return cached[1]
    if not self.multiworker:
      gens = getattr(self.step, kind)
    else:
      W = self.step.gather_weights(kind, variables="all")
      gens = None
      if self.chief:
        gens = []
        for k in range(self.K):
          if k in self.agent_ids:
            gens.append(getattr(self.step, kind)[self.agent_ids.index(k)])
            continue
          if (kind, k) not in self._shadow:
            self._shadow[kind, k] = make_generator(self.config, k)
          g = self._shadow[kind, k]
          offset = 0
          for v in models.combined_variables(g):
            size = int(np.prod(v.shape))
            v.assign(W[k, offset:offset + size].reshape(v.shape).astype(np.float32))
            offset += size
          gens.append(g)
    if averaged and gens is not None:
      recalibrate(self.config, gens)
    self._network_gens[kind] = (done, gens)
    return gens

  def sample_grids(self):
    """A 10x10 grid per agent from fixed noise, in inference mode (as the export will draw)."""
    gens = self.network_generators()
    if gens is None:
      return None
    return [export_lib.image_grid(g(self.fixed_noise, training=False).numpy(), rows=10)
            for g in gens]

  def write_samples(self, step):
    grids = self.sample_grids()
    if grids is None:
      return
    with self.writer.as_default(step=step):
      for k, grid in enumerate(grids):
        tf.summary.image(f"samples/agent_{k}", grid[None].astype(np.float32) / 255.0)
        export_lib.write_png(os.path.join(self.workdir, "samples", f"agent_{k}.png"), grid)

  def export(self):
    gens = self.network_generators()
    if gens is None:
      return []
    paths = []
    for k, g in enumerate(gens):
      paths.append(export_lib.export_generator(
          g, os.path.join(self.workdir, "export", f"agent_{k}"), self.config.model.latent_dim))
    return paths

  @property
  def evaluator(self):
    if self._evaluator is None:  # the classifier is trained on first use, then cached
      self._evaluator = metrics.Evaluator(self.config.data.name, arrays=self.arrays, verbose=True)
    return self._evaluator

  def _score(self, gens, num_samples):
    return [self.evaluator.score_generator(lambda z, g=g: g(z, training=False),
                                           self.config.model.latent_dim, num_samples,
                                           seed=self.config.seed + 1)
            for g in gens]

  def evaluate(self, step, num_samples, raw_too=False):
    """FID, KID and class coverage (by both classifiers) of every agent's read-out generator,
    the averaged one when train.ema_decay is on, against the real test split (Fig. 3);
    ``raw_too`` also scores the iterates w_k^G, so the effect of averaging is on record."""
    gens = self.network_generators()
    raw_gens = self.network_generators(averaged=False) if raw_too and self.step.ema_decay else None
    if gens is None:
      return None
    per_agent = self._score(gens, num_samples)
    network = metrics.network_summary(per_agent)
    with self.writer.as_default(step=step):
      for k, m in enumerate(per_agent):
        for key in ("fid", "kid", "coverage", "robust_coverage"):
          tf.summary.scalar(f"{key}/agent_{k}", m[key])
      for key in ("fid", "kid", "coverage", "robust_coverage"):
        tf.summary.scalar(f"{key}/mean", network[key + "_mean"])
    entry = {"iteration": step, "num_samples": num_samples,
             "generator": "averaged" if self.step.ema_decay else "iterate",
             "ema_decay": self.step.ema_decay, "agents": per_agent,
             "network": network, "classifier": self.evaluator.describe()}
    if raw_gens is not None:
      raw = self._score(raw_gens, num_samples)
      entry["raw"] = {"agents": raw, "network": metrics.network_summary(raw)}
      log("eval @%d | raw (not averaged) FID %s | mean %.2f", step,
          " ".join(f"{m['fid']:.1f}" for m in raw), entry["raw"]["network"]["fid_mean"])
    with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
      f.write(json.dumps(entry) + "\n")
    log("eval @%d | %sFID %s | mean %.2f | KID mean %.4f | coverage %s | robust %s | weakest "
        "class %s", step, "averaged " if self.step.ema_decay else "",
        " ".join(f"{m['fid']:.1f}" for m in per_agent), network["fid_mean"], network["kid_mean"],
        "/".join(str(m["coverage"]) for m in per_agent),
        "/".join(str(m["robust_coverage"]) for m in per_agent),
        "/".join(f"{100 * m['robust_weakest_class_share']:.1f}%" for m in per_agent))
    return entry

  def disagreements(self):
    """Network disagreement of D and G over all K agents (gathered from every worker)."""
    return (diffusion.disagreement_of(self.step.gather_weights("discriminators")),
            diffusion.disagreement_of(self.step.gather_weights("generators")))

  # ------------------------------------------------------------------------------- faults

  def check_finite_weights(self, iteration, restored=False):
    """Raises TrainingError if any agent's weights (BatchNorm statistics included) are NaN or
    Inf: a loss can still be finite in the round the weights blow up, so a checkpoint is only
    written after this passes. Every worker checks its own agents and learns the others' verdict
    (a collective), so all of them stop together."""
    local = np.array([not all(np.isfinite(v.numpy()).all() for m in (g, d) for v in m.weights)
                      for g, d in zip(self.step.generators, self.step.discriminators)])
    bad = np.flatnonzero(self.step.gather_local(local).reshape(-1)).tolist()  # by agent id
    if not bad:
      return
    if restored:
      raise TrainingError(
          f"{self.manager.latest_checkpoint} holds non-finite weights for agent(s) {bad} (written "
          "by a version that did not check them); delete it to resume from an earlier checkpoint, "
          "or start again in a new --workdir.")
    raise TrainingError(f"non-finite weights at iteration {iteration} for agent(s) {bad}. "
                        + self._kept_and_advice())

  def _kept_and_advice(self):
    """What survives a divergence, and advice that fits this config."""
    c, latest = self.config.train, self.manager.latest_checkpoint
    kept = (f"Nothing more was saved; the last checkpoint ({os.path.basename(latest)}, weights "
            "finite) is intact. " if latest else "No checkpoint had been written yet. ")
    tips = [f"lower --config.train.learning_rate (now {c.learning_rate:g}, e.g. "
            f"{c.learning_rate / 10:g})"]
    if not c.clip_norm or c.clip_norm > 5:
      tips.insert(0, "clip the gradients (--config.train.clip_norm=5)")
    elif c.optimizer == "sgd" and c.learning_rate <= 0.1:  # mu already modest: try another rule
      tips.append("try --config.train.optimizer=adam")
    advice = ", or ".join(tips)
    return (kept + advice[0].upper() + advice[1:] +
            ", then rerun in a new --workdir (this one's checkpoints fix its config).")

  def save(self, done, prior_seconds, t_start):
    """A checkpoint at ``done``, only of finite weights, with the training time so far."""
    self.check_finite_weights(done)
    workdir_lib.save_checkpoint(self.manager, done)
    workdir_lib.record_seconds(self.manager.directory, done,
                               prior_seconds + time.time() - t_start)

  # ------------------------------------------------------------------------------------ loop

  def stop_requested(self):
    """Whether a signal asked this run to stop; with several workers, whether any worker's
    did (a small collective each iteration), so that all stop at the same iteration."""
    if not self.multiworker:
      return bool(self.stop.received)
    return bool(self.step.gather_local(np.array([bool(self.stop.received)])).any())

  def _log_progress(self, done, total, d_loss, g_loss, dis_d, dis_g, speed, sent_per_iteration):
    with self.writer.as_default(step=done):
      for k in range(self.K):
        tf.summary.scalar(f"loss_d/agent_{k}", d_loss[k])
        tf.summary.scalar(f"loss_g/agent_{k}", g_loss[k])
      tf.summary.scalar("disagreement/discriminator", dis_d)
      tf.summary.scalar("disagreement/generator", dis_g)
      tf.summary.scalar("speed/iterations_per_second", speed)
      tf.summary.scalar("communication/parameters_per_iteration", sent_per_iteration)
    with open(os.path.join(self.workdir, "log.jsonl"), "a") as f:  # curves for bin/reproduce
      f.write(json.dumps({"iteration": done, "d_loss": d_loss.tolist(),
                          "g_loss": g_loss.tolist(), "disagreement_discriminator": dis_d,
                          "disagreement_generator": dis_g, "iterations_per_second": speed})
              + "\n")
    # one GAN (K = 1) has no agents to average over and nothing to disagree with
    network = ("" if self.K == 1 else
               f" (mean over agents) | disagreement D {dis_d:.2e} G {dis_g:.2e}")
    log("iter %d/%d | D %.3f G %.3f%s | %.2f it/s | ETA %s", done, total, d_loss.mean(),
        g_loss.mean(), network, speed, _fmt_time((total - done) / max(speed, 1e-9)))

  def run(self):
    """Trains to config.train.iterations. The first SIGINT/SIGTERM stops it cleanly at the end
    of an iteration, with a checkpoint there (workdir.Interrupted); with several workers, a lost
    peer ends every worker with a TrainingError that says how to resume instead of a hang or a
    stack of RPC errors."""
    with workdir_lib.StopOnSignal() as self.stop:
      if not self.multiworker:
        return self._run()
      try:
        return self._run()
      except PEER_ERRORS as e:
        raise TrainingError(
            f"worker {self.worker} lost contact with the other workers "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]}). A worker died or is "
            f"unreachable, so every worker stops. Relaunch the same command to resume from the "
            f"latest checkpoint all workers hold (under {os.path.dirname(self.checkpoint_dir)}).")

  def _run(self):
    c = self.config
    total, start = int(c.train.iterations), int(self.iteration.numpy())
    finished = workdir_lib.finished_record(self.workdir, start, total)
    if finished is not None:
      log("workdir already holds a finished run of %d iterations (>= %d); nothing to do",
          start, total)
      return finished
    if self.chief:  # the shared logs are the chief's; every worker cleans its own checkpoints
      workdir_lib.resume_records(self.workdir, start, total)
    workdir_lib.clean_partial_checkpoints(self.checkpoint_dir)
    self.describe()
    record = {"lambda_2": self.lambda2, "combination_matrix": self.A.tolist(), "num_agents": self.K,
              "shard_classes": [np.flatnonzero(x).tolist() for x in self.shard_labels],
              "start_iteration": start}
    if start >= total and self.chief:
      log("workdir already holds %d >= %d iterations; exporting only", start, total)
    pipeline = data_lib.network_pipeline(self.shards, self.batch_size, c.train.n_d, c.seed,
                                         skip_iterations=start,
                                         agent_ids=self.step.agent_ids)
    batches = iter(pipeline)
    t_start = time.time()
    prior_seconds = workdir_lib.session_seconds(self.manager.directory, start)
    t_window, i_window = t_start, start
    trace_time = None
    out = None
    sent = sum(float(self.schedule.messages(i) @ self.params_per_round) for i in range(start))
    for i in range(start, total):
      t0 = time.time()
      out = self.step(next(batches), **topology.step_inputs(self.schedule, i),
                      lr_scale=1.0 - c.train.lr_decay * i / total)
      sent += float(self.schedule.messages(i) @ self.params_per_round)
      d_loss, g_loss = out["d_loss"].numpy(), out["g_loss"].numpy()
      if trace_time is None:
        trace_time = time.time() - t0
        if self.chief:
          log("first iteration (tracing the step) took %.1fs", trace_time)
      if not (np.all(np.isfinite(d_loss)) and np.all(np.isfinite(g_loss))):
        bad = sorted(set(np.flatnonzero(~np.isfinite(d_loss)).tolist() +
                         np.flatnonzero(~np.isfinite(g_loss)).tolist()))
        raise TrainingError(
            f"non-finite loss at iteration {i + 1} for agent(s) {bad} (D {d_loss}, G {g_loss}). "
            + self._kept_and_advice())
      self.iteration.assign(i + 1)
      done = i + 1
      if done % c.train.log_every == 0 or done == total:
        now = time.time()
        speed = (done - i_window) / max(now - t_window, 1e-9)
        t_window, i_window = now, done
        dis_d, dis_g = self.disagreements()  # a collective: every worker takes part
        if not np.isfinite([dis_d, dis_g]).all():
          self.check_finite_weights(done)
        if self.chief:
          self._log_progress(done, total, d_loss, g_loss, dis_d, dis_g, speed, sent / done)
      if c.eval.eval_every and done % c.eval.eval_every == 0 and done < total:
        self.evaluate(done, c.eval.periodic_samples)
      if done % c.train.sample_every == 0:
        self.write_samples(done)
      if done % c.train.checkpoint_every == 0:
        self.save(done, prior_seconds, t_start)
      if self.stop_requested() and done < total:
        if not (self.manager.latest_checkpoint or "").endswith(f"-{done}"):
          self.save(done, prior_seconds, t_start)
        self.writer.flush()
        raise workdir_lib.Interrupted(
            f"stopped by {self.stop.received or 'another worker'} at iteration {done}/{total}; saved "
            f"{self.manager.latest_checkpoint}. Rerun the same command to resume from there.")
    elapsed = time.time() - t_start
    done = int(self.iteration.numpy())
    if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(
        f"-{done}"):
      self.save(done, prior_seconds, t_start)
    self.write_samples(done)
    paths = self.export()
    if self.step.ema_decay and c.eval.final_samples:
      self.network_generators(averaged=False)  # a collective: gathered here on every worker
    self.writer.flush()
    dis_d, dis_g = self.disagreements()
    record.update({
        "iterations": done, "train_seconds": prior_seconds + elapsed,
        "trace_seconds": trace_time,
        "iterations_per_second": (done - start) / elapsed if done > start else None,
        "parameters_sent_per_iteration": sent / done if done else None,
        "disagreement_discriminator": dis_d, "disagreement_generator": dis_g,
        "final_d_loss": None if out is None else out["d_loss"].numpy().tolist(),
        "final_g_loss": None if out is None else out["g_loss"].numpy().tolist(),
        "exports": paths, "placement": self._placement_record(),
        "exchange": self.step.exchange.name,
        "exchange_bytes_per_iteration": self.step.exchange.traffic,  # this worker's
    })
    if not self.chief:
      log("worker %d done: %d iterations in %s", self.worker, done - start, _fmt_time(elapsed))
      return record
    if c.eval.final_samples:
      final = self.evaluate(done, c.eval.final_samples, raw_too=True)
      with open(os.path.join(self.workdir, "metrics.json"), "w") as f:
        json.dump(final, f, indent=2)
      record["metrics"] = final["network"]
    workdir_lib.write_json(os.path.join(self.workdir, "run.json"), record)
    log("done: %d iterations in %s; samples in %s, exports in %s", done - start,
        _fmt_time(elapsed), os.path.join(self.workdir, "samples"),
        os.path.join(self.workdir, "export"))
    return record


def train_and_evaluate(config, workdir):
  """Trains (or resumes) the run in ``workdir`` and exports every agent's generator; the
  workdir's lock keeps a second run out, and a full or read-only disk is one clear error."""
  config_lib.validate(config)  # a bad config leaves no workdir behind
  lock_name = workdir_lib.LOCK_NAME
  if config.train.strategy == "multiworker":  # one lock per worker: the chief's is the usual one
    _, worker = placement_lib.cluster_from_env()
    lock_name += f".worker{worker}" if worker else ""
  workdir_lib.prepare(workdir)
  with workdir_lib.lock(workdir, lock_name), workdir_lib.disk_errors(workdir):
    return Trainer(config, workdir).run()
