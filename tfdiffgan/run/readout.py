"""Read-outs of a run: every agent's generator gathered to the chief, its samples, exports and
scores (FID, KID, class coverage by both classifiers, against the real test split: Fig. 3).

``gather`` is a collective under multiworker (every worker calls it at the same point of the
loop); everything else runs on the chief alone, after it.
"""

import os

import numpy as np
import tensorflow as tf

from tfdiffgan import export as export_lib
from tfdiffgan import files
from tfdiffgan import metrics
from tfdiffgan import models
from tfdiffgan import seeds
from tfdiffgan.run import build
from tfdiffgan.run import checkpoints as checkpoints_lib


class Readout:
  """The chief's view of every agent's generator, and what it writes of them."""

  def __init__(self, config, workdir, network):
    self.config, self.workdir, self.network = config, workdir, network
    self.step = network.step
    self._evaluator = None
    self._shadow = {}     # chief, multiworker: copies of other workers' agents' generators
    self._gathered = {}   # kind -> (iteration, generators) last gathered
    self.fixed_noise = np.random.default_rng(seeds.samples(config.seed)).normal(
        size=(100, config.model.latent_dim)).astype(np.float32)

  @property
  def averaged(self):
    return bool(self.step.ema_decay)

  def gather(self, done, averaged=None):
    """Every agent's generator, on the chief; None on the other workers: the averaged one when
    train.ema_decay is on (``averaged`` None: the read-out), else the iterate w_k^G. With
    several workers the chief copies the gathered weights (BatchNorm statistics included) into
    models of the other workers' agents: a COLLECTIVE, which every worker calls."""
    averaged = self.averaged if averaged is None else averaged
    kind = "ema_generators" if averaged else "generators"
    cached = self._gathered.get(kind)
    if cached and cached[0] == done:
      return cached[1]
    if not self.network.cluster.multiworker:
      gens = getattr(self.step, kind)
    else:
      W = self.step.gather_weights(kind, variables="all")
      gens = self._from_gathered(kind, W) if self.network.cluster.chief else None
    if averaged and gens is not None:
      checkpoints_lib.recalibrate(self.config, gens)
    self._gathered[kind] = (done, gens)
    return gens

  def _from_gathered(self, kind, W):
    """The chief's generators for every agent from the gathered weights W [K, P]."""
    gens, own = [], self.network.agent_ids
    for k in range(self.network.K):
      if k in own:
        gens.append(getattr(self.step, kind)[own.index(k)])
        continue
      if (kind, k) not in self._shadow:
        self._shadow[kind, k] = build.make_generator(self.config, k)
      g, offset = self._shadow[kind, k], 0
      for v in models.combined_variables(g):
        size = int(np.prod(v.shape))
        v.assign(W[k, offset:offset + size].reshape(v.shape).astype(np.float32))
        offset += size
      gens.append(g)
    return gens

  # ---------------------------------------------------------------------- the chief's part

  def write_samples(self, gens, step, writer):
    """A 10x10 grid per agent from fixed noise, in inference mode (as the export will draw)."""
    with writer.as_default(step=step):
      for k, g in enumerate(gens):
        grid = export_lib.image_grid(g(self.fixed_noise, training=False).numpy(), rows=10)
        tf.summary.image(f"samples/agent_{k}", grid[None].astype(np.float32) / 255.0)
        export_lib.write_png(os.path.join(self.workdir, "samples", f"agent_{k}.png"), grid)

  def export(self, gens):
    return [export_lib.export_generator(g, os.path.join(self.workdir, "export", f"agent_{k}"),
                                        self.config.model.latent_dim)
            for k, g in enumerate(gens)]

  @property
  def evaluator(self):
    if self._evaluator is None:  # the classifier is trained on first use, then cached
      self._evaluator = metrics.Evaluator(self.config.data.name, arrays=self.network.arrays,
                                          verbose=True)
    return self._evaluator

  def score(self, gens, num_samples):
    return [self.evaluator.score_generator(lambda z, g=g: g(z, training=False),
                                           self.config.model.latent_dim, num_samples,
                                           seed=seeds.evaluation(self.config.seed))
            for g in gens]

  def evaluate(self, gens, step, num_samples, writer, raw_gens=None):
    """The scores of the read-out generators (and of the iterates ``raw_gens``, so the effect
    of averaging is on record), in TensorBoard and metrics.jsonl; returns the entry."""
    per_agent = self.score(gens, num_samples)
    network = metrics.network_summary(per_agent)
    with writer.as_default(step=step):
      for key in ("fid", "kid", "coverage", "robust_coverage"):
        for k, m in enumerate(per_agent):
          tf.summary.scalar(f"{key}/agent_{k}", m[key])
        tf.summary.scalar(f"{key}/mean", network[key + "_mean"])
    entry = {"iteration": step, "num_samples": num_samples,
             "generator": "averaged" if self.averaged else "iterate",
             "ema_decay": self.step.ema_decay, "agents": per_agent,
             "network": network, "classifier": self.evaluator.describe(),
             "pooled": self.evaluator.score_pooled(  # every agent's samples as one set
                 [lambda z, g=g: g(z, training=False) for g in gens],
                 self.config.model.latent_dim, num_samples, seed=seeds.evaluation(self.config.seed))}
    if raw_gens is not None:
      raw = self.score(raw_gens, num_samples)
      entry["raw"] = {"agents": raw, "network": metrics.network_summary(raw)}
      build.log("eval @%d | raw (not averaged) FID %s | mean %.2f", step,
                " ".join(f"{m['fid']:.1f}" for m in raw), entry["raw"]["network"]["fid_mean"])
    files.append_jsonl(os.path.join(self.workdir, "metrics.jsonl"), entry)
    build.log("eval @%d | %sFID %s | mean %.2f | KID mean %.4f | coverage %s | robust %s | "
              "weakest class %s", step, "averaged " if self.averaged else "",
              " ".join(f"{m['fid']:.1f}" for m in per_agent), network["fid_mean"],
              network["kid_mean"], "/".join(str(m["coverage"]) for m in per_agent),
              "/".join(str(m["robust_coverage"]) for m in per_agent),
              "/".join(f"{100 * m['robust_weakest_class_share']:.1f}%" for m in per_agent))
    return entry
