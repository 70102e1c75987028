"""What a run tells its user: the header, progress lines, TensorBoard scalars, log.jsonl (the
curves bin/reproduce reads), metrics.json and run.json. The chief alone writes them."""

import os

import numpy as np
import tensorflow as tf

from tfdiffgan import files
from tfdiffgan.run import build


def fmt_time(seconds):
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


def present_agents(active, n_d, num_agents):
  """(D, G) masks [K] of the agents that adapted at least once this iteration, from the
  iteration's ``active`` [rounds, K] (None: every agent): an agent offline in every round of a
  phase has no loss to report for it (logged as missing, not as 0)."""
  if active is None:
    return np.ones(num_agents, bool), np.ones(num_agents, bool)
  active = np.asarray(active) > 0
  return active[:n_d].any(axis=0), active[n_d:].any(axis=0)


def _mean(values, present):
  return float(np.mean(values[present])) if present.any() else float("nan")


class Records:
  """The chief's writers (no-ops on the other workers, and for a read-only run)."""

  def __init__(self, config, workdir, network, enabled=True):
    self.config, self.workdir, self.network = config, workdir, network
    self.enabled = enabled
    self._writer = None if enabled else tf.summary.create_noop_writer()

  @property
  def writer(self):
    """TensorBoard's writer, made on first use: a rerun with nothing to do adds no event file."""
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self.workdir)
    return self._writer

  def describe(self):
    """The run header: what is trained, on what network and which data."""
    c, n = self.config, self.network
    if n.cluster.multiworker:
      build.log("worker %d of %d: agents %s", n.cluster.worker, n.cluster.num_workers,
                n.agent_ids)
    if not self.enabled:
      return
    model = (f"width={c.model.width} (D {build.discriminator_width(c)}) "
             f"optimizer={c.train.optimizer} mu={c.train.learning_rate} n_d={c.train.n_d} "
             f"n_g={c.train.n_g}")
    if n.centralized:  # one GAN: no graph, no combine, the shards pooled
      build.log("mode=centralized: one GAN on the union of %d shards (%d images, batch %d) "
                "data=%s %s", c.num_agents, len(n.shards[0]), n.batch_size, c.data.name, model)
      return
    build.log("mode=%s K=%d graph=%s rule=%s lambda_2=%.4f data=%s/%s %s strategy=%s (%d "
              "worker(s), %s exchange)", c.train.mode, n.K, c.topology.graph, c.topology.rule,
              n.lambda2, c.data.name, c.data.partition, model, c.train.strategy,
              n.cluster.strategy.num_replicas_in_sync, n.step.exchange.name)
    for k, counts in enumerate(n.shard_labels):
      build.log("agent %d: %d images, classes %s", k, int(counts.sum()),
                [int(c) for c in np.flatnonzero(counts)])

  def progress(self, done, total, losses, present, status, speed, sent_per_iteration):
    """One progress line, its TensorBoard scalars and its log.jsonl row. ``present``: (D, G)
    masks of the agents that adapted (an offline agent's loss is missing, None in the log)."""
    if not self.enabled:
      return
    (d_loss, g_loss), (has_d, has_g) = losses, present
    dis_d, dis_g = status.disagreement_d, status.disagreement_g
    with self.writer.as_default(step=done):
      for k in range(self.network.K):
        if has_d[k]:
          tf.summary.scalar(f"loss_d/agent_{k}", d_loss[k])
        if has_g[k]:
          tf.summary.scalar(f"loss_g/agent_{k}", g_loss[k])
      tf.summary.scalar("disagreement/discriminator", dis_d)
      tf.summary.scalar("disagreement/generator", dis_g)
      tf.summary.scalar("speed/iterations_per_second", speed)
      tf.summary.scalar("communication/parameters_per_iteration", sent_per_iteration)
    listed = lambda x, has: [float(v) if h else None for v, h in zip(x, has)]
    files.append_jsonl(os.path.join(self.workdir, "log.jsonl"), {
        "iteration": done, "d_loss": listed(d_loss, has_d), "g_loss": listed(g_loss, has_g),
        "disagreement_discriminator": dis_d, "disagreement_generator": dis_g,
        "iterations_per_second": speed})
    # one GAN (K = 1) has no agents to average over and nothing to disagree with
    network = ("" if self.network.K == 1 else
               f" (mean over agents) | disagreement D {dis_d:.2e} G {dis_g:.2e}")
    build.log("iter %d/%d | D %.3f G %.3f%s | %.2f it/s | ETA %s", done, total,
              _mean(d_loss, has_d), _mean(g_loss, has_g), network, speed,
              fmt_time((total - done) / max(speed, 1e-9)))

  def finish(self, record, final):
    """metrics.json (the final scores) and run.json (the run's record), each written once."""
    if final is not None:
      files.write_json(os.path.join(self.workdir, "metrics.json"), final)
      record["metrics"] = final["network"]
    files.write_json(os.path.join(self.workdir, "run.json"), record)
