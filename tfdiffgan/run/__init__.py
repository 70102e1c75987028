"""train_and_evaluate(config, workdir): one run of Algorithm 1, built from its parts.

  build        the strategy, this process's agents, shards, schedule and step (run/build.py)
  checkpoints  what is saved, where to resume, warm starts, the finite guard (run/checkpoints.py)
  sync         every collective all workers must call, in order (run/sync.py)
  readout      generators gathered to the chief: samples, exports, scores (run/readout.py)
  records      header, progress lines, TensorBoard, log.jsonl, run.json (run/records.py)
  loop         the iterations and what follows each (run/loop.py)

Writes, under ``workdir``: config.json (resolved), checkpoints/ (resumable), TensorBoard events,
samples/agent_K.png, export/agent_K/ (SavedModel per generator), metrics.json and run.json.
With ``train.strategy=multiworker`` each worker process runs this over the agents it owns:
every worker checkpoints its own agents under checkpoints/worker-N/, and worker 0, the chief,
gathers what it reports and alone writes the shared files.
"""

import os

import numpy as np
import tensorflow as tf

from tfdiffgan import config as config_lib
from tfdiffgan import placement as placement_lib
from tfdiffgan import workdir as workdir_lib
from tfdiffgan.errors import TrainingError
from tfdiffgan.run import build
from tfdiffgan.run import checkpoints as checkpoints_lib
from tfdiffgan.run import loop
from tfdiffgan.run import readout as readout_lib
from tfdiffgan.run import records as records_lib
from tfdiffgan.run import sync as sync_lib

# What a collective raises when a peer worker is gone: its health check aborts (Unavailable,
# Cancelled, Aborted) or the collective times out (DeadlineExceeded).
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.CancelledError, tf.errors.AbortedError)


class Run:
  """One run's parts, built in order; ``train()`` runs the loop to config.train.iterations."""

  def __init__(self, config, workdir, read_only=False):
    """read_only: only restore: writes no config.json and no event file."""
    config_lib.validate(config)
    self.cluster = build.make_cluster(config)  # first: before any other TensorFlow op
    config_lib.check_resume(workdir, config)
    self.config, self.workdir = config, workdir
    self.network = build.build(config, self.cluster)
    self.sync = sync_lib.Sync(self.network.step)
    self.checkpoints = checkpoints_lib.Checkpoints(config, workdir, self.network)
    self._restore_or_warm_start()
    self.start = self.checkpoints.done
    # Written only once the run has built: a bad config must not leave a config.json behind
    # that would then refuse the corrected one as an incompatible resume.
    if self.chief and not read_only:
      config_lib.write(workdir, config)
      self.checkpoints.write_placement()
    self.records = records_lib.Records(config, workdir, self.network,
                                       enabled=self.chief and not read_only)
    self.readout = readout_lib.Readout(config, workdir, self.network)

  @property
  def chief(self):
    return self.cluster.chief

  @property
  def step(self):
    return self.network.step

  def _restore_or_warm_start(self):
    """Start-up collectives, in order: every worker's saved iterations, then whether the
    restored weights are finite on every worker."""
    ck = self.checkpoints
    ck.set_aside_damaged()
    resume = ck.resume_point(self.sync.every_worker(ck.own_iterations()))   # collective
    if resume:
      ck.restore(resume)
      finite = self.sync.every_worker(self.sync.finite_flags()).reshape(-1)  # collective
      ck.refuse_nonfinite(np.flatnonzero(~finite).tolist(), ck.done, restored=True)
    elif self.config.train.init_from:
      ck.warm_start(self.config.train.init_from)

  def header_record(self):
    n = self.network
    return {"lambda_2": n.lambda2, "combination_matrix": n.A.tolist(), "num_agents": n.K,
            "shard_classes": [np.flatnonzero(x).tolist() for x in n.shard_labels],
            "start_iteration": self.start}

  def train(self):
    """Trains to config.train.iterations. The first SIGINT/SIGTERM stops it cleanly at the end
    of an iteration, with a checkpoint there (errors.Interrupted); with several workers, a lost
    peer ends every worker with a TrainingError that says how to resume instead of a hang or a
    stack of RPC errors."""
    total = int(self.config.train.iterations)
    finished = workdir_lib.finished_record(self.workdir, self.start, total)
    if finished is not None:
      build.log("workdir already holds a finished run of %d iterations (>= %d); nothing to do",
                self.start, total)
      return finished
    if self.chief:  # the shared logs are the chief's; every worker cleans its own checkpoints
      workdir_lib.resume_records(self.workdir, self.start, total)
    workdir_lib.clean_partial_checkpoints(self.checkpoints.directory)
    self.records.describe()
    if self.start >= total and self.chief:
      build.log("workdir already holds %d >= %d iterations; exporting only", self.start, total)
    with workdir_lib.StopOnSignal() as stop:
      try:
        return loop.train(self, stop)
      except PEER_ERRORS as e:
        if not self.cluster.multiworker:
          raise
        raise TrainingError(
            f"worker {self.cluster.worker} lost contact with the other workers "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]}). A worker died or is "
            f"unreachable, so every worker stops. Relaunch the same command to resume from the "
            f"latest checkpoint all workers hold (under {self.workdir}/checkpoints).")


def train_and_evaluate(config, workdir):
  """Trains (or resumes) the run in ``workdir`` and exports every agent's generator; the
  workdir's lock keeps a second run out, and a full or read-only disk is one clear error."""
  config_lib.validate(config)  # a bad config leaves no workdir behind
  lock_name = workdir_lib.LOCK_NAME
  if config.train.strategy == "multiworker":  # one lock per worker: the chief's is the usual one
    _, worker = placement_lib.cluster_from_env()
    lock_name += f".worker{worker}" if worker else ""
  created = workdir_lib.first_missing(workdir)
  workdir_lib.prepare(workdir)
  try:
    with workdir_lib.lock(workdir, lock_name), workdir_lib.disk_errors(workdir):
      return Run(config, workdir).train()
  except Exception:
    if created:  # a run that failed before writing anything leaves no workdir behind
      workdir_lib.remove_if_unused(workdir, created)
    raise
