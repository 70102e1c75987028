"""Exchange: the combine step (eq. 10b) for the agents one worker owns, whatever their placement.

One interface, ``combine(phi_local, A, worker) -> w_local``: phi_local stacks this worker's L agents'
copies of each shared variable ([L, ...] per variable, slot order), A is the round's K x K matrix,
and the result is w_k = sum_l a_lk phi_l for the same L agents. Three implementations, the same
numbers whichever is used (tests/test_exchange.py, tests/test_multiworker.py):

  local      every agent in this replica: one ``tf.tensordot`` per variable with A (K = L).
  allgather  collective all-gather of every worker's phi (one flat buffer per round), then the
             worker's own columns of A. Each worker receives (K - L) P numbers a round.
  neighbors  pairwise collective groups, one per pair of workers with an edge between their agents
             (``all_gather_v2`` with group_size=2, one group key per pair, issued in one global
             order so no two workers wait on each other): a worker receives only its neighbours'
             phi, deg_w L P numbers a round instead of (K - L) P.

Each exchange also counts, while its round is built, the bytes it hands to and receives from its
collectives per iteration (``traffic``): what the bench reports beside the formulas.
"""

import numpy as np
import tensorflow as tf

from tfdiffgan.errors import check_choice
from tfdiffgan.errors import ConfigError

EXCHANGES = ("local", "allgather", "neighbors")

# Keys of the pairwise groups: far above those MultiWorkerMirroredStrategy hands out (it counts up
# from 1), so the two never collide.
_GROUP_KEY_BASE = 1_000_000
_INSTANCE_KEY_BASE = 10_000_000


def mix(A_columns, phi):
  """Combine step (eq. 10b): w_k = sum_l a_lk phi_l for the agents whose columns of A are given.

  phi stacks K agents' copies of one variable on a leading axis, [K, ...]; A_columns is [K, L];
  the result is [L, ...]. With all K columns this is A^T Phi, one tensordot per variable.
  """
  return tf.tensordot(A_columns, phi, axes=[[0], [0]])


def flatten(phi_local):
  """[L, ...] per variable -> one [L, P] buffer, and what ``unflatten`` needs to undo it."""
  L = phi_local[0].shape[0]
  shapes = [p.shape[1:] for p in phi_local]
  sizes = [int(np.prod(s)) for s in shapes]
  return tf.concat([tf.reshape(p, [L, -1]) for p in phi_local], axis=1), (shapes, sizes)


def unflatten(flat, layout):
  shapes, sizes = layout
  return [tf.reshape(part, [-1, *shape])
          for part, shape in zip(tf.split(flat, sizes, axis=1), shapes)]


class Exchange:
  """Base: knows the placement. Every exchange moves rows, one per agent: ``gather_rows`` hands
  this worker's [L, W] rows to the workers that need them and returns the rows of every agent in
  its ``reach`` (its own and those it receives), which ``mix_reach`` combines with A (eq. 10b).
  ``combine`` is the two together on the flattened phi; compressed diffusion sends its payload
  through ``gather_rows`` as well (compression.to_wire)."""

  name = None

  def __init__(self, placement):
    self.placement = placement
    self.traffic = {"sent": 0, "received": 0}  # bytes per iteration, counted while tracing
    self._round = 0

  def begin_iteration(self):
    """Called once at the start of each traced iteration: rounds are numbered from 0 again."""
    self.traffic = {"sent": 0, "received": 0}
    self._round = 0

  def own_columns(self, A, worker):
    own = self.placement.agents_of(worker)
    return tf.gather(A, own, axis=1)  # [K, L]

  def reach(self, worker):
    """The agents whose rows ``gather_rows`` returns to ``worker``, in that order."""
    return list(range(self.placement.num_agents))

  def gather_rows(self, rows, worker):
    raise NotImplementedError

  def mix_reach(self, A, worker, rows):
    """w_k = sum_l a_lk rows_l (eq. 10b) for ``worker``'s agents k, l over its reach."""
    reach = self.reach(worker)
    columns = self.own_columns(A, worker)
    if reach != list(range(self.placement.num_agents)):
      columns = tf.gather(columns, reach, axis=0)        # a_lk, l in reach
    return mix(columns, rows)

  def combine(self, phi_local, A, worker):
    flat, layout = flatten(phi_local)
    return unflatten(self.mix_reach(A, worker, self.gather_rows(flat, worker)), layout)

  def _count(self, rows, messages):
    """Counts ``messages`` sends and receipts of the block ``rows`` for this round."""
    nbytes = int(np.prod(rows.shape)) * rows.dtype.size
    self.traffic["sent"] += messages * nbytes
    self.traffic["received"] += messages * nbytes


class LocalExchange(Exchange):
  """Every agent lives in this replica (one worker): one tensordot per variable."""

  name = "local"

  def combine(self, phi_local, A, worker=0):
    if self.placement.num_workers != 1:
      raise ValueError("the local exchange needs every agent in one replica")
    return [mix(A, p) for p in phi_local]

  def gather_rows(self, rows, worker=0):
    return rows


class AllGatherExchange(Exchange):
  """All-gather phi from every worker (tf.distribute's replica context), mix own columns."""

  name = "allgather"

  def gather_rows(self, rows, worker):
    gathered = tf.distribute.get_replica_context().all_gather(rows, axis=0)  # [K, W], by agent id
    gathered.set_shape([self.placement.num_agents, *rows.shape[1:]])  # static, as every worker's
    self._count(rows, self.placement.num_workers - 1)    # a ring forwards N - 1 blocks of L rows
    self._round += 1
    return gathered


class NeighborExchange(Exchange):
  """Only the owners of in-neighbours send: one pairwise collective group per pair of workers
  whose agents share an edge of ``support`` (the union of every round's A_t pattern)."""

  name = "neighbors"

  def __init__(self, placement, support, timeout_seconds=0.0):
    super().__init__(placement)
    support = np.asarray(support) != 0
    self.pairs = placement.worker_pairs(support)
    self.timeout = float(timeout_seconds)

  def _partners(self, worker):
    return sorted({a if b == worker else b for a, b in self.pairs if worker in (a, b)})

  def reach(self, worker):
    workers = sorted([worker, *self._partners(worker)])
    return [k for w in workers for k in self.placement.agents_of(w)]

  def gather_rows(self, rows, worker):
    from tensorflow.python.ops import collective_ops  # pylint: disable=g-import-not-at-top
    N, L = self.placement.num_workers, self.placement.per_worker
    blocks = {worker: rows}
    last = None
    for index, (a, b) in enumerate(self.pairs):          # one global order on every worker
      if worker not in (a, b):
        continue
      with tf.control_dependencies([last] if last is not None else []):
        pair = collective_ops.all_gather_v2(
            rows, group_size=2, group_key=_GROUP_KEY_BASE + a * N + b,
            instance_key=_INSTANCE_KEY_BASE + self._round * len(self.pairs) + index,
            timeout=self.timeout)                        # [2L, W], lower task index first
      last = pair
      blocks[b if worker == a else a] = pair[L:] if worker == a else pair[:L]
      self._count(rows, 1)
    self._round += 1
    out = tf.concat([blocks[w] for w in sorted(blocks)], axis=0)  # [(deg_w + 1) L, W], by reach
    out.set_shape([len(blocks) * L, *rows.shape[1:]])              # static, as every worker's
    return out


def resolve(name, num_replicas, multiworker=False):
  """The exchange that ``train.exchange=name`` runs over ``num_replicas`` replicas.

  auto is local with one replica, else allgather. neighbors pairs workers only across processes:
  in-process (mirrored) replicas share memory, so nothing is saved by pairing (allgather), and
  with one replica there is nobody to pair with (local). local needs every agent in one replica.
  """
  check_choice(name, ("auto",) + EXCHANGES, "train.exchange")
  if name == "auto":
    return "local" if num_replicas == 1 else "allgather"
  if name == "local" and num_replicas > 1:
    raise ConfigError("the local exchange needs every agent in one replica; use allgather or "
                      "neighbors with several workers.")
  if name == "neighbors":
    return "local" if num_replicas == 1 else ("neighbors" if multiworker else "allgather")
  return name


def check_config(config):
  """train.exchange fits train.strategy: local keeps every agent in one replica."""
  t = config.train
  replicas = t.replicas if t.strategy == "mirrored" else 1  # multiworker: known from TF_CONFIG
  if t.exchange == "local" and t.strategy != "default":
    raise ConfigError(f"train.exchange=local keeps every agent in one replica, but "
                      f"train.strategy={t.strategy} spreads them: use allgather or "
                      "neighbors (or auto).")
  resolve(t.exchange, replicas, t.strategy == "multiworker")


def make_exchange(name, placement, support=None, timeout_seconds=0.0):
  if name == "local":
    return LocalExchange(placement)
  if name == "allgather":
    return AllGatherExchange(placement)
  if name == "neighbors":
    if support is None:
      raise ValueError("the neighbors exchange needs the graph's support")
    return NeighborExchange(placement, support, timeout_seconds)
  raise ValueError(f"unknown exchange {name!r}; choose one of {EXCHANGES}.")
