"""A run's checkpoints: what is saved, where to resume, warm starts and the finite-weights guard.

One process writes checkpoints/ckpt-N; under multiworker every worker writes its own agents
(keyed by global agent id) under checkpoints/worker-W/, and checkpoints/placement.json records
how the agents were spread, so a relaunch with another number of workers is refused before it
restores half a network. bin/evaluate and bin/generate read generators from here without
building a run (``load_generators``).
"""

import glob
import os
import time

import numpy as np
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management  # pylint: disable=g-direct-tensorflow-import  (timestamps kept)

from tfdiffgan import files
from tfdiffgan import models
from tfdiffgan import seeds
from tfdiffgan import workdir as workdir_lib
from tfdiffgan.errors import ConfigError, ExportError, TrainingError
from tfdiffgan.run import build


def checkpoint_dirs(workdir):
  """checkpoints/worker-W/ of every worker of a multiworker run, else [checkpoints/]."""
  root = os.path.join(workdir, "checkpoints")
  return sorted(glob.glob(os.path.join(root, "worker-*"))) or [root]


def saved_iterations(directory):
  """The iterations of the checkpoints a CheckpointManager keeps in ``directory``."""
  state = tf.train.get_checkpoint_state(directory)
  return sorted({int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths}) if state \
      else []


def check_placement(workdir, processes):
  """Refuses a relaunch whose workers would not find their agents' checkpoints."""
  saved = files.read_json(os.path.join(workdir, "checkpoints", "placement.json"))
  if saved is None or saved.get("processes") == processes:
    return
  how = (f"bin/launch --workers={saved['processes']} -- bin/train ... "
         "--config.train.strategy=multiworker" if saved.get("processes", 1) > 1
         else "one process (--config.train.strategy=default or mirrored)")
  raise ConfigError(
      f"{workdir} was trained by {saved.get('processes')} process(es), each checkpointing its "
      f"own agents; this launch has {processes}. Resume it with {how}, or train in a new "
      "--workdir.")


def read_whole(paths):
  """(intact paths, [(damaged path, why)]): each checkpoint read tensor by tensor, so a
  truncated file or a failed checksum shows before a restore would half-apply it."""
  intact, damaged = [], []
  for path in paths:
    try:
      reader = tf.train.load_checkpoint(path)
      for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)
      intact.append(path)
    except (tf.errors.OpError, IndexError, ValueError) as e:
      damaged.append((path, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120]}"))
  return intact, damaged


def kept_and_advice(c, latest):
  """What survives a divergence (``latest``: the last checkpoint), and advice that fits the
  config's train fields ``c``."""
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


class Checkpoints:
  """This process's checkpoint: the iteration count and every trackable of its agents."""

  def __init__(self, config, workdir, network):
    self.config, self.workdir, self.network = config, workdir, network
    cluster = network.cluster
    self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
    self.checkpoint = tf.train.Checkpoint(iteration=self.iteration,
                                          **network.step.trackables())
    self.directory = os.path.join(workdir, "checkpoints")
    if cluster.multiworker:
      self.directory = os.path.join(self.directory, f"worker-{cluster.worker}")
    self.check_placement()
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                              max_to_keep=config.train.keep_checkpoints)

  @property
  def latest(self):
    return self.manager.latest_checkpoint

  @property
  def done(self):
    return int(self.iteration.numpy())

  def placement_record(self):
    return {"processes": self.network.cluster.num_workers, **self.network.placement.to_dict()}

  def check_placement(self):
    check_placement(self.workdir, self.network.cluster.num_workers)

  def write_placement(self):
    os.makedirs(os.path.join(self.workdir, "checkpoints"), exist_ok=True)
    files.write_json(os.path.join(self.workdir, "checkpoints", "placement.json"),
                     self.placement_record())

  # --------------------------------------------------------------------------------- resume

  def set_aside_damaged(self):
    """Reads every kept checkpoint whole (each tensor's checksum is verified): one that is
    truncated or corrupt is moved to checkpoints/.../damaged/ (never deleted) and forgotten, so
    the run resumes from the newest intact one; under multiworker the workers then agree on the
    newest iteration all of them hold intact (``resume_point``)."""
    intact, damaged = read_whole(self.manager.checkpoints)
    if not damaged:
      return
    if not intact:
      listed = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in damaged)
      raise TrainingError(
          f"every checkpoint in {self.directory} is damaged ({listed}); nothing was changed. "
          "Train in a new --workdir, or move checkpoints/ away to start this one over.")
    aside = os.path.join(self.directory, "damaged")
    os.makedirs(aside, exist_ok=True)
    for path, why in damaged:
      for f in glob.glob(glob.escape(path) + ".*"):
        os.replace(f, os.path.join(aside, os.path.basename(f)))
      build.log("%s is damaged (%s): moved to %s, falling back to %s", path, why, aside,
                os.path.basename(intact[-1]))
    # the manager keeps only checkpoints with a timestamp: keep those of the intact ones
    state = tf.train.get_checkpoint_state(self.directory)
    stamps = dict(zip(state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps))
    checkpoint_management.update_checkpoint_state_internal(
        self.directory, intact[-1], all_model_checkpoint_paths=intact,
        all_model_checkpoint_timestamps=[stamps.get(p, time.time()) for p in intact],
        last_preserved_timestamp=state.last_preserved_timestamp)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                              max_to_keep=self.config.train.keep_checkpoints)

  def own_iterations(self):
    """The iterations this process has saved, padded with -1 to a fixed length (every worker
    sends the same shape to the collective that compares them)."""
    keep = self.config.train.keep_checkpoints + 1
    mine = [int(p.rsplit("-", 1)[1]) for p in self.manager.checkpoints][-keep:]
    return np.array(mine + [-1] * (keep - len(mine)), np.int64)

  def resume_point(self, every):
    """The checkpoint to resume from, given every worker's ``own_iterations`` [workers, keep]:
    the newest iteration all of them saved (a worker killed while saving may lag one behind)."""
    if not self.network.cluster.multiworker:
      return self.latest
    common = set(every[0].tolist())
    for row in every[1:]:
      common &= set(row.tolist())
    common.discard(-1)
    if common:
      return os.path.join(self.directory, f"ckpt-{max(common)}")
    if (every >= 0).any():
      raise TrainingError(
          f"the workers of {self.workdir} hold no checkpoint of a common iteration (saved: "
          + "; ".join(f"worker {w}: {[int(x) for x in row if x >= 0]}"
                      for w, row in enumerate(every))
          + "); a checkpoint directory was removed or the run crashed while saving. Train in a "
          "new --workdir.")
    return None

  def restore(self, path):
    try:
      self.checkpoint.restore(path).assert_existing_objects_matched()
    except AssertionError as e:  # e.g. agents stored by position (before they were by id)
      raise TrainingError(
          f"{path} does not hold this run's agents by id ({str(e).splitlines()[0][:160]}); "
          "it was written by an older tfdiffgan or another layout. Train in a new --workdir "
          "(its exports, if any, still load in bin/evaluate and bin/generate).") from e
    build.log("resumed %s at iteration %d", path, self.done)

  def warm_start(self, source):
    """Loads every agent's G and D weights (BatchNorm statistics included) from another run's
    checkpoint; optimizer state, noise streams and the iteration count start afresh. Lets a
    sweep start all its runs from one trained state (the Theorem 1 check)."""
    path = source
    if os.path.isdir(source):
      path = tf.train.latest_checkpoint(os.path.join(source, "checkpoints"))
      if path is None:
        raise ConfigError(f"train.init_from={source!r} holds no checkpoint under "
                          "checkpoints/; train that run first.")
    saved = {int(name.split("/")[1].split("_")[1]) for name, _ in tf.train.list_variables(path)
             if name.startswith("generators/agent_")}
    if saved != set(range(self.network.K)):
      raise ConfigError(
          f"train.init_from={source!r} holds {len(saved)} agent(s) but this run has "
          f"{self.network.K}: a warm start gives agent k agent k's weights, so it needs the same "
          "num_agents (and model); train the source with this num_agents, or set it to "
          f"{len(saved)}.")
    trackables = self.network.step.trackables()
    weights = tf.train.Checkpoint(generators=trackables["generators"],
                                  discriminators=trackables["discriminators"])
    try:
      weights.read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise ConfigError(
          f"train.init_from={source!r} does not fit this run ({str(e).splitlines()[0][:200]}); "
          "it needs the same num_agents, model.width, model.d_width, model.minibatch_std, "
          "model.pack and model.latent_dim.") from e
    build.log("warm start: weights of %d agents from %s", self.network.K, path)

  # ----------------------------------------------------------------------------------- save

  def save(self, done, seconds):
    """A checkpoint at ``done`` (its weights already found finite by the iteration's sync),
    with the training time so far."""
    workdir_lib.save_checkpoint(self.manager, done)
    workdir_lib.record_seconds(self.manager.directory, done, seconds)

  def has(self, done):
    return (self.latest or "").endswith(f"-{done}")

  def refuse_nonfinite(self, bad, iteration, restored=False):
    """The finite-weights guard: a loss can still be finite in the round the weights blow up,
    so nothing is saved once an agent's weights hold NaN or Inf."""
    if not bad:
      return
    if restored:
      raise TrainingError(
          f"{self.latest} holds non-finite weights for agent(s) {bad} (written by a version "
          "that did not check them); delete it to resume from an earlier checkpoint, or start "
          "again in a new --workdir.")
    raise TrainingError(f"non-finite weights at iteration {iteration} for agent(s) {bad}. "
                        + self.kept_and_advice())

  def kept_and_advice(self):
    return kept_and_advice(self.config.train, self.latest)


class Clock:
  """Training seconds: those of earlier sessions (recorded with each checkpoint) plus this one's."""

  def __init__(self, checkpoint_dir, start):
    self.prior = workdir_lib.session_seconds(checkpoint_dir, start)
    self.t_start = time.time()

  def elapsed(self):
    return time.time() - self.t_start

  def total(self):
    return self.prior + self.elapsed()


# ------------------------------------------------------------------------ reading generators


def recalibrate(config, generators, num_samples=2048):
  """The averaged generators' own BatchNorm statistics, from a fixed noise batch (the same for
  every agent and every read-out, so a read-out is a function of the averaged weights alone)."""
  z = np.random.default_rng(seeds.recalibration(config.seed)).normal(
      size=(num_samples, config.model.latent_dim)).astype(np.float32)
  for g in generators:
    models.recalibrate_batchnorm(g, z)
  return generators


def load_generators(config, workdir):
  """Every agent's read-out generator from a workdir's checkpoints, in this one process,
  without building a run: the averaged generators when train.ema_decay is on (their BatchNorm
  statistics recomputed), else the iterates. With several workers' checkpoints, from the newest
  iteration all of them hold. Returns (iteration, generators)."""
  dirs = checkpoint_dirs(workdir)
  common = set.intersection(*[set(saved_iterations(d)) for d in dirs])
  if not common:
    raise ExportError(f"{workdir} has neither exports nor a checkpoint that every worker saved; "
                      "train it (or relaunch its training) to finish it.")
  K = 1 if config.train.mode == "centralized" else config.num_agents
  gens = [build.make_generator(config, k) for k in range(K)]
  kind = "ema_generators" if config.train.ema_decay else "generators"
  reader = tf.train.Checkpoint(**{kind: {f"agent_{k}": g for k, g in enumerate(gens)}})
  for d in dirs:
    reader.read(os.path.join(d, f"ckpt-{max(common)}")).expect_partial()
  return max(common), (recalibrate(config, gens) if config.train.ema_decay else gens)
