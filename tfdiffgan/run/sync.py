"""The collectives of a run: every one that all workers must call, in the same order, is here.

Under ``train.strategy=multiworker`` each worker holds only its own agents, and a collective
blocks until every worker has called it. So the loop calls them by name, and in one order:

  at start-up   ``every_worker(saved iterations)``  the newest checkpoint every worker holds
                ``every_worker(finite flags)``      a restored checkpoint is sound on every worker
  per iteration the step's exchanges (eq. 10b), then ``iteration(...)``: ONE small all-gather
                that carries the stop flag, the finiteness of every agent (on the iterations
                that log or save) and, when logged, the disagreement's sufficient statistics
  at a read-out ``readout.Readout.gather`` (every agent's generator to the chief), then, after
                the chief alone has scored or written them, ``wait_for_chief()``: a barrier with
                no deadline, so a ``train.collective_timeout`` shorter than an evaluation does
                not end the run with a false "lost contact"

In one process every call is local: no collective at all.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfdiffgan import diffusion


NO_DEADLINE = tf.distribute.experimental.CommunicationOptions(timeout_seconds=0)


@dataclasses.dataclass
class Status:
  """What the workers agreed on at the end of an iteration."""
  stop: bool                   # some worker received SIGINT/SIGTERM
  nonfinite: list              # agents (by id) whose weights hold NaN or Inf
  disagreement_d: float = None  # (1/K) sum_k ||w_k - w_c||^2 of D and G (Theorem 1), if asked
  disagreement_g: float = None


def _scatter(W):
  """(mean [P], sum_k ||w_k - mean||^2) of stacked weights W [L, P]: a worker's share of the
  network disagreement, which combines exactly (``_disagreement``)."""
  mean = W.mean(axis=0)
  return mean, float(np.sum((W - mean) ** 2))


def _disagreement(means, scatters, per_worker):
  """The network disagreement from every worker's (mean, scatter) of L agents each: the
  parallel-axis theorem, sum_j S_j + L sum_j ||m_j - m||^2, over K = N L agents."""
  means = np.asarray(means, np.float64)
  centre = means.mean(axis=0)
  total = float(np.sum(scatters)) + per_worker * float(np.sum((means - centre) ** 2))
  return total / (per_worker * len(means))


class Sync:
  """The collectives of one process's step (see the module docstring for their order)."""

  def __init__(self, step):
    self.step = step
    self.multiworker = step.multiworker
    models = [list(g.weights) + list(d.weights)
              for g, d in zip(step.generators, step.discriminators)]
    self._finite = tf.function(lambda: tf.stack([
        tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in vs]) for vs in models]))
    self._gathers = {}

  def finite_flags(self):
    """Per local agent: are all its G and D weights (BatchNorm statistics included) finite?"""
    return self._finite().numpy()

  def every_worker(self, values):
    """A small per-worker array stacked over all workers, in worker order: a collective with
    no deadline (workers reach start-up and read-outs at different times; a dead peer still
    aborts it through the strategy's health check)."""
    values = np.asarray(values)
    if not self.multiworker:
      return values[None]
    if values.dtype == bool:  # collectives move numbers
      return self.every_worker(values.astype(np.int32)).astype(bool)
    key = (values.shape, values.dtype.str)
    if key not in self._gathers:
      strategy = self.step.strategy
      replica_fn = lambda x: tf.distribute.get_replica_context().all_gather(
          x[None], axis=0, options=NO_DEADLINE)
      self._gathers[key] = tf.function(lambda x: strategy.run(replica_fn, args=(x,)))
    out = self._gathers[key](tf.constant(values))
    return np.asarray(self.step.strategy.experimental_local_results(out)[0])

  def iteration(self, stop, check_weights, disagreement):
    """The one collective of an iteration (a local computation in one process)."""
    L = self.step.M
    finite = self.finite_flags() if check_weights else np.ones(L, bool)
    if not self.multiworker:
      status = Status(bool(stop), [k for k, ok in zip(self.step.agent_ids, finite) if not ok])
      if disagreement:
        status.disagreement_d = diffusion.disagreement(self.step.discriminators)
        status.disagreement_g = diffusion.disagreement(self.step.generators)
      return status
    parts = [np.array([float(bool(stop))]), finite.astype(np.float64)]
    if disagreement:
      for models in (self.step.discriminators, self.step.generators):
        mean, scatter = _scatter(diffusion.flat_weights(models))
        parts += [np.array([scatter]), mean]
    every = self.step.gather_local(np.concatenate(parts))   # [N, 1 + L (+ 2 + P_D + P_G)]
    bad = np.flatnonzero(every[:, 1:1 + L].reshape(-1) < 0.5).tolist()  # worker-major = agent id
    status = Status(bool(every[:, 0].max() > 0), bad)
    if disagreement:
      p_d = sum(int(np.prod(v.shape)) for v in self.step.discriminators[0].trainable_variables)
      at = 1 + L
      status.disagreement_d = _disagreement(every[:, at + 1:at + 1 + p_d], every[:, at], L)
      at += 1 + p_d
      status.disagreement_g = _disagreement(every[:, at + 1:], every[:, at], L)
    return status

  def wait_for_chief(self):
    """Holds every worker until the chief has finished a read-out (``every_worker``: no
    deadline, whatever train.collective_timeout says)."""
    self.every_worker(np.ones(1, np.int32))
