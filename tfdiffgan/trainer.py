"""train_and_evaluate(config, workdir): the loop around the compiled step of Algorithm 1.

Writes, under ``workdir``: config.json (resolved), checkpoints/ (resumable), TensorBoard events,
samples/agent_K.png, export/agent_K/ (SavedModel per generator) and run.json (the run's record).
"""

import contextlib
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
from tfdiffgan import topology
from tfdiffgan import workdir as workdir_lib


def log(fmt, *args):
  """Progress lines on stdout; TensorFlow's own INFO chatter stays off."""
  print("[tfdiffgan] " + (fmt % args if args else fmt), flush=True)


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. NaN losses); what was saved before is kept."""


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


def make_agents(config, num_agents, A, strategy):
  """K generators and discriminators, each agent seeded on its own so agent k's initial weights
  do not depend on K (non-cooperative agents are then exactly independent runs), each built on
  the device of the replica that owns it."""
  gens, discs, d_opts, g_opts = [], [], [], []
  for k in range(num_agents):
    device = diffusion.agent_device(strategy, k, num_agents)
    with tf.device(device) if device else contextlib.nullcontext():
      keras.utils.set_random_seed(config.seed * 1000 + k)
      gens.append(models.make_generator(config.model.latent_dim, config.model.width,
                                        name=f"generator_{k}"))
      discs.append(models.make_discriminator(config.model.width, name=f"discriminator_{k}"))
      d_opts.append(optim.make_optimizer(config.train.optimizer, config.train.learning_rate,
                                         config.train.beta1, config.train.clip_norm))
      g_opts.append(optim.make_optimizer(config.train.optimizer, config.train.learning_rate,
                                         config.train.beta1, config.train.clip_norm))
  return diffusion.DiffusionStep(gens, discs, d_opts, g_opts, A, n_d=config.train.n_d,
                                 n_g=config.train.n_g, latent_dim=config.model.latent_dim,
                                 loss=config.train.loss, seed=config.seed, strategy=strategy)


def load_shards(config):
  """The agents' private image shards (uint8), and the dataset's test split."""
  arrays = data_lib.load_dataset(config.data.name, config.data.source_dir, verbose=True)
  parts = data_lib.partition(arrays["y_train"], config.num_agents, config.data.partition,
                             seed=config.seed, classes=config.data.classes,
                             alpha=config.data.dirichlet_alpha)
  shards = [arrays["x_train"][p] for p in parts]
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
    config_lib.check_resume(workdir, config)
    self.config, self.workdir = config, workdir
    tf.random.set_seed(config.seed)

    shards, self.shard_labels, self.arrays = load_shards(config)
    self.schedule, self.A, self.K = build_network(config, len(shards))
    self.lambda2 = topology.rate(self.schedule, self.A)
    self.batch_size = config.data.batch_size
    if config.train.mode == "centralized":  # same samples per iteration as K agents of batch B
      shards, self.batch_size = [np.concatenate(shards)], config.data.batch_size * config.num_agents
    self.shards = shards
    data_lib.check_shards(shards, self.batch_size)

    self.strategy = diffusion.make_strategy(config.train.strategy, config.train.replicas)
    self.step = make_agents(config, self.K, self.A, self.strategy)
    self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
    self.checkpoint = tf.train.Checkpoint(iteration=self.iteration, **self.step.trackables())
    self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(workdir, "checkpoints"),
                                              max_to_keep=config.train.keep_checkpoints)
    if self.manager.latest_checkpoint:
      self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
      log("resumed %s at iteration %d", self.manager.latest_checkpoint,
          int(self.iteration.numpy()))
      self.check_finite_weights(int(self.iteration.numpy()), restored=True)
    elif config.train.init_from:
      self.warm_start(config.train.init_from)
    # Written only once the run has built: a bad config must not leave a config.json behind
    # that would then refuse the corrected one as an incompatible resume.
    if not read_only:
      config_lib.write(workdir, config)
    self._writer = tf.summary.create_noop_writer() if read_only else None
    self._evaluator = None
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
    d_params, g_params = count(self.step.discriminators[0]), count(self.step.generators[0])
    self.params_per_round = np.array([d_params] * config.train.n_d + [g_params] * config.train.n_g,
                                     np.float64)  # one message = one agent's D or G weights
    self.fixed_noise = np.random.default_rng(config.seed).normal(
        size=(100, config.model.latent_dim)).astype(np.float32)

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
    weights = tf.train.Checkpoint(generators=self.step.generators,
                                  discriminators=self.step.discriminators)
    try:
      weights.read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise config_lib.ConfigError(
          f"train.init_from={source!r} does not fit this run ({str(e).splitlines()[0][:200]}); "
          "it needs the same num_agents, model.width and model.latent_dim.") from e
    log("warm start: weights of %d agents from %s", self.K, path)

  # --------------------------------------------------------------------------------- outputs

  def describe(self):
    c = self.config
    log("mode=%s K=%d graph=%s rule=%s lambda_2=%.4f data=%s/%s width=%s optimizer=%s mu=%s "
        "n_d=%d n_g=%d strategy=%s (%d replica(s))", c.train.mode, self.K, c.topology.graph,
        c.topology.rule, self.lambda2, c.data.name, c.data.partition, c.model.width,
        c.train.optimizer, c.train.learning_rate, c.train.n_d, c.train.n_g, c.train.strategy,
        self.strategy.num_replicas_in_sync)
    for k, counts in enumerate(self.shard_labels):
      log("agent %d: %d images, classes %s", k, int(counts.sum()),
          [int(c) for c in np.flatnonzero(counts)])

  def sample_grids(self):
    """A 10x10 grid per agent from fixed noise, in inference mode (as the export will draw)."""
    return [export_lib.image_grid(g(self.fixed_noise, training=False).numpy(), rows=10)
            for g in self.step.generators]

  def write_samples(self, step):
    grids = self.sample_grids()
    with self.writer.as_default(step=step):
      for k, grid in enumerate(grids):
        tf.summary.image(f"samples/agent_{k}", grid[None].astype(np.float32) / 255.0)
        export_lib.write_png(os.path.join(self.workdir, "samples", f"agent_{k}.png"), grid)

  def export(self):
    paths = []
    for k, g in enumerate(self.step.generators):
      paths.append(export_lib.export_generator(
          g, os.path.join(self.workdir, "export", f"agent_{k}"), self.config.model.latent_dim))
    return paths

  @property
  def evaluator(self):
    if self._evaluator is None:  # the classifier is trained on first use, then cached
      self._evaluator = metrics.Evaluator(self.config.data.name, arrays=self.arrays, verbose=True)
    return self._evaluator

  def evaluate(self, step, num_samples):
    """FID, KID and class coverage of every agent against the real test split (Fig. 3)."""
    per_agent = [self.evaluator.score_generator(lambda z, g=g: g(z, training=False),
                                                self.config.model.latent_dim, num_samples,
                                                seed=self.config.seed + 1)
                 for g in self.step.generators]
    network = metrics.network_summary(per_agent)
    with self.writer.as_default(step=step):
      for k, m in enumerate(per_agent):
        for key in ("fid", "kid", "coverage"):
          tf.summary.scalar(f"{key}/agent_{k}", m[key])
      for key in ("fid", "kid", "coverage"):
        tf.summary.scalar(f"{key}/mean", network[key + "_mean"])
    entry = {"iteration": step, "num_samples": num_samples, "agents": per_agent,
             "network": network, "classifier": self.evaluator.classifier.describe()}
    with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
      f.write(json.dumps(entry) + "\n")
    log("eval @%d | FID %s | mean %.2f | KID mean %.4f | coverage %s", step,
        " ".join(f"{m['fid']:.1f}" for m in per_agent), network["fid_mean"],
        network["kid_mean"], "/".join(str(m["coverage"]) for m in per_agent))
    return entry

  def disagreements(self):
    return (diffusion.disagreement(self.step.discriminators),
            diffusion.disagreement(self.step.generators))

  # ------------------------------------------------------------------------------- faults

  def check_finite_weights(self, iteration, restored=False):
    """Raises TrainingError if any agent's weights (BatchNorm statistics included) are NaN or
    Inf: a loss can still be finite in the round the weights blow up, so a checkpoint is only
    written after this passes."""
    bad = [k for k in range(self.K)
           if not all(np.isfinite(v.numpy()).all() for m in (self.step.generators[k],
                                                              self.step.discriminators[k])
                      for v in m.weights)]
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

  def run(self):
    """Trains to config.train.iterations; the first SIGINT/SIGTERM stops it cleanly at the end
    of an iteration, with a checkpoint there (workdir.Interrupted)."""
    with workdir_lib.StopOnSignal() as self.stop:
      return self._run()

  def _run(self):
    c = self.config
    total, start = int(c.train.iterations), int(self.iteration.numpy())
    finished = workdir_lib.finished_record(self.workdir, start, total)
    if finished is not None:
      log("workdir already holds a finished run of %d iterations (>= %d); nothing to do",
          start, total)
      return finished
    workdir_lib.resume_records(self.workdir, start, total)
    self.describe()
    record = {"lambda_2": self.lambda2, "combination_matrix": self.A.tolist(), "num_agents": self.K,
              "shard_classes": [np.flatnonzero(x).tolist() for x in self.shard_labels],
              "start_iteration": start}
    if start >= total:
      log("workdir already holds %d >= %d iterations; exporting only", start, total)
    pipeline = data_lib.network_pipeline(self.shards, self.batch_size, c.train.n_d, c.seed,
                                         skip_iterations=start)
    batches = iter(pipeline)
    t_start = time.time()
    prior_seconds = workdir_lib.session_seconds(self.manager.directory, start)
    t_window, i_window = t_start, start
    trace_time = None
    out = None
    sent = sum(float(self.schedule.messages(i) @ self.params_per_round) for i in range(start))
    for i in range(start, total):
      t0 = time.time()
      out = self.step(next(batches), **topology.step_inputs(self.schedule, i))
      sent += float(self.schedule.messages(i) @ self.params_per_round)
      d_loss, g_loss = out["d_loss"].numpy(), out["g_loss"].numpy()
      if trace_time is None:
        trace_time = time.time() - t0
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
        dis_d, dis_g = self.disagreements()
        if not np.isfinite([dis_d, dis_g]).all():
          self.check_finite_weights(done)
        with self.writer.as_default(step=done):
          for k in range(self.K):
            tf.summary.scalar(f"loss_d/agent_{k}", d_loss[k])
            tf.summary.scalar(f"loss_g/agent_{k}", g_loss[k])
          tf.summary.scalar("disagreement/discriminator", dis_d)
          tf.summary.scalar("disagreement/generator", dis_g)
          tf.summary.scalar("speed/iterations_per_second", speed)
          tf.summary.scalar("communication/parameters_per_iteration", sent / done)
        with open(os.path.join(self.workdir, "log.jsonl"), "a") as f:  # curves for bin/reproduce
          f.write(json.dumps({"iteration": done, "d_loss": d_loss.tolist(),
                              "g_loss": g_loss.tolist(), "disagreement_discriminator": dis_d,
                              "disagreement_generator": dis_g, "iterations_per_second": speed})
                  + "\n")
        log("iter %d/%d | D %.3f G %.3f (mean over agents) | disagreement D %.2e G %.2e "
            "| %.2f it/s | ETA %s", done, total, d_loss.mean(), g_loss.mean(), dis_d,
            dis_g, speed, _fmt_time((total - done) / max(speed, 1e-9)))
      if c.eval.eval_every and done % c.eval.eval_every == 0 and done < total:
        self.evaluate(done, c.eval.periodic_samples)
      if done % c.train.sample_every == 0:
        self.write_samples(done)
      if done % c.train.checkpoint_every == 0:
        self.save(done, prior_seconds, t_start)
      if self.stop.received and done < total:
        if not (self.manager.latest_checkpoint or "").endswith(f"-{done}"):
          self.save(done, prior_seconds, t_start)
        self.writer.flush()
        raise workdir_lib.Interrupted(
            f"stopped by {self.stop.received} at iteration {done}/{total}; saved "
            f"{self.manager.latest_checkpoint}. Rerun the same command to resume from there.")
    elapsed = time.time() - t_start
    done = int(self.iteration.numpy())
    if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(
        f"-{done}"):
      self.save(done, prior_seconds, t_start)
    self.write_samples(done)
    paths = self.export()
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
        "exports": paths,
    })
    if c.eval.final_samples:
      final = self.evaluate(done, c.eval.final_samples)
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
  workdir_lib.prepare(workdir)
  with workdir_lib.lock(workdir), workdir_lib.disk_errors(workdir):
    return Trainer(config, workdir).run()
