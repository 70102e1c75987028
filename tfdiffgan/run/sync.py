"""The collectives of a run: every one that all workers must call, in the same order, is here.

Under ``train.strategy=multiworker`` each worker holds only its own agents, and a collective
blocks until every worker has called it. So the loop calls them by name, and in one order:

  at start-up   ``every_worker(saved iterations)``  the newest checkpoint every worker holds
                ``every_worker(finite flags)``      a restored checkpoint is sound on every worker
  per iteration the step's exchanges (eq. 10b), then ``iteration(...)``: ONE small all-gather
                that carries the stop flag and the finiteness of every agent (on the iterations
                that log or save); on a logged iteration it is preceded by ``_sum``, an
                all-reduce of the agents' weights (the centroid w_c of Theorem 1), and also
                carries each worker's scatter about that centroid
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


def scatter_about(W, centre):
  """sum_k ||w_k - c||^2 over the rows of W [L, P], in float64: a worker's share of the network
  disagreement (1/K) sum_k ||w_k - w_c||^2 once every worker uses the same centre c. With c the
  centroid w_c rounded to float32 (error e), the shares sum to the exact value plus K ||e||^2,
  because sum_k (w_k - w_c) = 0: float32 rounding of w_c costs nothing measurable."""
  return float(np.sum((np.asarray(W, np.float64) - np.asarray(centre, np.float64)) ** 2))


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
    return self._collective("gather", values, lambda x: tf.distribute.get_replica_context(
    ).all_gather(x[None], axis=0, options=NO_DEADLINE))

  def _collective(self, name, values, replica_fn):
    """replica_fn run on this worker's replica with values as its input, traced once per
    (name, shape, dtype): the collective's result on this worker, as numpy."""
    key = (name, values.shape, values.dtype.str)
    if key not in self._gathers:
      strategy = self.step.strategy
      self._gathers[key] = tf.function(lambda x: strategy.run(replica_fn, args=(x,)))
    out = self._gathers[key](tf.constant(values))
    return np.asarray(self.step.strategy.experimental_local_results(out)[0])

  def iteration(self, stop, check_weights, disagreement):
    """The end of an iteration: one small all-gather, after an all-reduce of the centroid when
    the disagreement is asked for (a local computation in one process)."""
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
      # The centroid w_c as float32 by a ring all-reduce (2 (N - 1) / N of P_D + P_G per worker,
      # not the N - 1 float64 copies an all-gather of each worker's mean would move); each
      # worker then sends one number per network, its agents' scatter about w_c.
      nets = [diffusion.flat_weights(m) for m in (self.step.discriminators, self.step.generators)]
      total = self._sum(np.concatenate([W.sum(axis=0) for W in nets]).astype(np.float32))
      centre = total.astype(np.float64) / self.step.K
      p_d = nets[0].shape[1]
      parts.append([scatter_about(nets[0], centre[:p_d]), scatter_about(nets[1], centre[p_d:])])
    every = self.step.gather_local(np.concatenate(parts))   # [N, 1 + L (+ 2)]
    bad = np.flatnonzero(every[:, 1:1 + L].reshape(-1) < 0.5).tolist()  # worker-major = agent id
    status = Status(bool(every[:, 0].max() > 0), bad)
    if disagreement:
      status.disagreement_d, status.disagreement_g = map(
          float, every[:, 1 + L:].sum(axis=0) / self.step.K)
    return status

  def _sum(self, values):
    """The elementwise sum over workers of a float32 vector, on every worker (a collective)."""
    device = self.step.strategy.extended.worker_devices[0]  # this worker's one replica

    def replica_fn(x):
      with tf.device(device):  # an all-reduce needs its input placed
        x = tf.identity(x)
      return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, x)
    return self._collective("sum", values, replica_fn)

  def wait_for_chief(self):
    """Holds every worker until the chief has finished a read-out (``every_worker``: no
    deadline, whatever train.collective_timeout says)."""
    self.every_worker(np.ones(1, np.int32))
