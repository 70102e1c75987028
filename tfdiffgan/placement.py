"""Placement: which worker owns which agent (decentralizepy's mapping, uid <-> machine and slot).

Worker w of N owns the contiguous block of agents w*L .. w*L + L - 1 (L = K / N), in slot order.
A worker is a process (``train.strategy=multiworker``) or a replica inside one process
(``mirrored``); with one worker (``default``) a process owns every agent. Nothing but this module
and the exchange needs to know where an agent lives.
"""

import json
import os

from tfdiffgan.errors import check_choice
from tfdiffgan.errors import ConfigError
from tfdiffgan.errors import PlacementError

# default: one process, one replica, every agent; mirrored: train.replicas replicas in one process;
# multiworker: one replica per worker process (TF_CONFIG).
STRATEGIES = ("default", "mirrored", "multiworker")


def check_config(config):
  """How the agents are spread: the strategy, and a replica count that divides K."""
  t = config.train
  check_choice(t.strategy, STRATEGIES, "train.strategy")
  if t.strategy != "default" and t.mode == "centralized":
    raise ConfigError("train.mode=centralized trains one GAN, which cannot be spread over "
                      "replicas or workers: use --config.train.strategy=default.")
  if t.strategy == "mirrored":
    if isinstance(t.replicas, bool) or not isinstance(t.replicas, int) or t.replicas < 1 or \
        config.num_agents % t.replicas:
      raise ConfigError(f"train.replicas={t.replicas!r} must be a positive divisor of "
                        f"num_agents={config.num_agents} ({_divisors(config.num_agents)}): each "
                        "replica owns K/R agents.")


def _divisors(K):
  """The worker counts K agents split evenly over, written as a list (not a range)."""
  return ", ".join(str(d) for d in range(1, K + 1) if K % d == 0)


class Placement:
  """Agent k -> (worker, slot) for K agents over N workers, each owning a contiguous block."""

  def __init__(self, num_agents, num_workers=1):
    K, N = int(num_agents), int(num_workers)
    if N < 1 or K < 1:
      raise PlacementError(f"need at least one agent and one worker (got K={K}, N={N}).")
    if K % N:
      raise PlacementError(f"{K} agents cannot be spread evenly over {N} workers: each worker "
                           f"owns K/N agents. Use one of these numbers of workers: "
                           f"{_divisors(K)}; or change num_agents.")
    self.num_agents, self.num_workers, self.per_worker = K, N, K // N

  def agents_of(self, worker):
    """The global ids of the agents worker ``worker`` owns, in slot order."""
    L = self.per_worker
    return list(range(worker * L, (worker + 1) * L))

  def owner(self, agent):
    return agent // self.per_worker

  def slot(self, agent):
    return agent % self.per_worker

  def neighbour_workers(self, support, worker):
    """The workers owning an in-neighbour of one of ``worker``'s agents (support[l, k] != 0 for
    l there, k here), excluding ``worker`` itself. With a symmetric support these are also the
    workers that need this worker's agents."""
    own = set(self.agents_of(worker))
    return sorted({self.owner(l) for l in range(self.num_agents) for k in own
                   if support[l][k] and self.owner(l) != worker})

  def worker_pairs(self, support):
    """Every unordered pair of workers with an edge between their blocks, in one global order
    (sorted): issuing pairwise exchanges in this order on every worker cannot deadlock."""
    pairs = set()
    for l in range(self.num_agents):
      for k in range(self.num_agents):
        a, b = self.owner(l), self.owner(k)
        if a != b and (support[l][k] or support[k][l]):
          pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)

  def to_dict(self):
    return {"num_agents": self.num_agents, "num_workers": self.num_workers,
            "agents": [self.agents_of(w) for w in range(self.num_workers)]}


def cluster_from_env():
  """(num_workers, worker index) from TF_CONFIG, as MultiWorkerMirroredStrategy reads it."""
  raw = os.environ.get("TF_CONFIG", "")
  if not raw:
    raise PlacementError("train.strategy=multiworker needs TF_CONFIG describing the cluster: start "
                         "the workers with bin/launch --workers=N -- bin/train ..., or set "
                         "TF_CONFIG on each host (see README, Multi-host).")
  try:
    tf_config = json.loads(raw)
    workers = tf_config["cluster"]["worker"]
    task = tf_config["task"]
    index = int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise PlacementError(f"TF_CONFIG is not valid ({e}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": i}}.') from e
  if task.get("type") != "worker" or set(tf_config["cluster"]) - {"worker"}:
    raise PlacementError("TF_CONFIG: tfdiffgan runs workers only (task.type 'worker', no chief "
                         "or ps job); worker 0 acts as chief.")
  if not 0 <= index < len(workers):
    raise PlacementError(f"TF_CONFIG task.index={index} but the cluster has {len(workers)} "
                         "workers.")
  return len(workers), index
