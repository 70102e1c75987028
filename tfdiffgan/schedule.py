"""Combination schedules: the matrix A_t of every ATC round, behind one interface.

Diffusion uses the same A every round; the baselines the paper cites (a fusion center, gossip)
and the faults of a network (links that fail, agents offline) change A_t from round to round.
Each is a ``Schedule``, so all of them run in the same compiled step, and each counts what it
sends: one message is one agent's parameter vector (D's or G's) over one link.

The recursion is W_new = A_t^T Phi (eq. 10b), so a random schedule contracts the mean-square
disagreement per round by lambda_max(E[A_t A_t^T] - 11^T/K); ``rate`` reports its square root,
comparable with the lambda_2 of a static A (eq. 11).
"""

import numpy as np

from tfdiffgan import seeds
from tfdiffgan import topology
from tfdiffgan.errors import check_choice
from tfdiffgan.errors import TopologyError

FAILURE_RULES = ("metropolis", "self")
SAMPLE_ITERATIONS = 200  # iterations over which E[A_t] and E[A_t A_t^T] are estimated


def _count_links(A):
  off = np.array(A, float)
  np.fill_diagonal(off, 0)
  return int(np.count_nonzero(off > 0))


class Schedule:
  """What the run needs of a schedule: K agents, ``rounds`` per iteration (n_d + n_g)."""

  random = False        # A_t drawn at random (gossip, faults): rate from E[A_t A_t^T]
  has_dropouts = False  # some agents sit out some rounds (``active``)

  def __init__(self, num_agents, rounds):
    self.K, self.rounds = int(num_agents), int(rounds)
    self._mean = None

  def matrices(self, iteration):
    """[rounds, K, K]: A_t of each round of this iteration."""
    raise NotImplementedError

  def support(self):
    """Which a_lk can ever be non-zero: who may talk to whom (the neighbors exchange's pairs)."""
    raise NotImplementedError

  def edges(self):
    """The links faults may cut: pairs (a, b), a < b."""
    return []

  def active(self, iteration):
    """[rounds, K] float32: 1 where an agent adapts that round (every agent, unless dropouts)."""
    del iteration
    return np.ones((self.rounds, self.K), np.float32)

  def count_messages(self, A):
    """Messages one round with matrix A sends: one per off-diagonal link with a_lk > 0."""
    return _count_links(A)

  def messages(self, iteration):
    return np.array([self.count_messages(A) for A in self.matrices(iteration)])

  def mean_matrix(self):
    """E[A_t]: exact for a deterministic schedule, estimated for a random one."""
    if self._mean is None:
      self._mean = self._estimate_mean()
    return self._mean

  def _estimate_mean(self):
    return np.mean([self.matrices(i) for i in range(SAMPLE_ITERATIONS)], axis=(0, 1))

  def rate(self):
    """The lambda_2 to report: rho(A - 11^T/K) for a deterministic schedule, the root of the
    mean-square rate for a random one (lambda_2 of E[A_t] is not what governs it)."""
    if self.random:
      return float(np.sqrt(mean_square_rate(self)))
    return topology.lambda2(self.mean_matrix())

  def step_inputs(self, iteration):
    """The step's keyword arguments for one iteration: the rounds' matrices, and who adapts
    when agents drop out (a static schedule overrides this: its A is compiled in)."""
    inputs = {"matrices": self.matrices(iteration)}
    if self.has_dropouts:
      inputs["active"] = self.active(iteration)
    return inputs


class StaticSchedule(Schedule):
  """The same A every round: diffusion (Metropolis, ...) and non-cooperative (A = I). Every
  agent sends phi_l to each neighbour k with a_lk > 0: one message per off-diagonal link."""

  def __init__(self, A, rounds):
    self.A = np.asarray(A, float)
    super().__init__(self.A.shape[0], rounds)
    self.links = _count_links(self.A)

  def matrices(self, iteration):
    del iteration
    return np.repeat(self.A[None], self.rounds, axis=0)

  def support(self):
    return self.A != 0

  def edges(self):
    return [tuple(e) for e in np.argwhere(self.A + self.A.T > 0)]

  def messages(self, iteration):
    del iteration
    return np.full(self.rounds, self.links)

  def _estimate_mean(self):
    return self.A

  def step_inputs(self, iteration):
    del iteration
    return {}


class FusionSchedule(Schedule):
  """A fusion center in the manner of FedGAN: every ``period`` iterations all agents upload
  both networks and take the network mean (A = 11^T/K: K uploads + K downloads), D after its
  last round of that iteration and G after its last; local rounds (A = I) otherwise."""

  def __init__(self, num_agents, period, n_d, n_g):
    if period < 1:
      raise TopologyError(f"topology.fusion_period={period} must be >= 1.")
    super().__init__(num_agents, n_d + n_g)
    self.period, self.n_d = int(period), int(n_d)

  def _averaging(self, iteration):
    """Which rounds of this iteration average: D's last and G's last, every period-th one."""
    avg = np.zeros(self.rounds, bool)
    if (iteration + 1) % self.period == 0:
      avg[[self.n_d - 1, self.rounds - 1]] = True
    return avg

  def support(self):
    return np.ones((self.K, self.K), bool)  # the fusion center's average reaches everyone

  def matrices(self, iteration):
    avg = self._averaging(iteration)
    mean, eye = np.full((self.K, self.K), 1.0 / self.K), np.eye(self.K)
    return np.stack([mean if a else eye for a in avg])

  def messages(self, iteration):
    return np.where(self._averaging(iteration), 2 * self.K, 0)

  def count_messages(self, A):
    """An upload and a download per agent that takes part in the average (a_kk < 1)."""
    taking_part = int(np.count_nonzero(np.diag(A) < 1 - 1e-12))
    return 2 * taking_part if taking_part > 1 else 0

  def _estimate_mean(self):
    """The mean over a period, exactly: two averaging rounds in every ``period`` iterations."""
    share = 2.0 / (self.rounds * self.period)
    return np.full((self.K, self.K), share / self.K) + (1 - share) * np.eye(self.K)

  def rate(self):
    """The mean-square rate over one period, exactly, as for a random schedule (the fault
    wrapper's rate of this schedule is then the same quantity, estimated)."""
    return float(np.sqrt(mean_square_rate(self, sample_iterations=self.period)))


class GossipSchedule(Schedule):
  """Randomized pairwise gossip: each round a random maximal matching of the graph's edges, and
  each matched pair averages (a_ii = a_jj = a_ij = a_ji = 1/2). Seeded by (seed, round), so a
  resumed run draws the same matchings."""

  random = True

  def __init__(self, graph, rounds, seed=0):
    super().__init__(graph.number_of_nodes(), rounds)
    self._edges = sorted(tuple(sorted(e)) for e in graph.edges if e[0] != e[1])
    self.seed = seed

  def edges(self):
    return self._edges

  def support(self):
    S = np.eye(self.K, dtype=bool)
    for a, b in self._edges:
      S[a, b] = S[b, a] = True
    return S

  def matching(self, t):
    rng = np.random.default_rng([self.seed, t])
    used, pairs = set(), []
    for i in rng.permutation(len(self._edges)):
      a, b = self._edges[i]
      if a not in used and b not in used:
        used.update((a, b))
        pairs.append((a, b))
    return pairs

  def matrices(self, iteration):
    out = np.repeat(np.eye(self.K)[None], self.rounds, axis=0)
    for r in range(self.rounds):
      for a, b in self.matching(iteration * self.rounds + r):
        out[r, a, a] = out[r, b, b] = out[r, a, b] = out[r, b, a] = 0.5
    return out

  def messages(self, iteration):
    return np.array([2 * len(self.matching(iteration * self.rounds + r))
                     for r in range(self.rounds)])


# ----------------------------------------------------------------- faults of the network
#
# Links that drop and agents that go offline, drawn afresh each round from (seed, round), so a
# resumed run draws the same. Each round's A_t is rebuilt on what survives and stays doubly
# stochastic; E[A_t] must satisfy Assumption 1 (unless A = I: nothing to agree on).


def degrade(A, cut, rule="metropolis"):
  """A with the links in ``cut`` (boolean K x K) removed, still doubly stochastic.

  metropolis: Metropolis weights recomputed on the surviving links of A's graph. self: the
  weight of each cut link moves to both endpoints' self-weights (needs a symmetric A). An agent
  with every link cut keeps only itself: its row and column become e_k.
  """
  cut = np.asarray(cut, bool)
  cut = (cut | cut.T) & ~np.eye(len(A), dtype=bool)  # a link fails both ways
  if not (cut & (A > 0)).any():
    return A
  if rule == "metropolis":
    return topology.metropolis_matrix((A > 0) & ~cut)
  removed = np.where(cut, A, 0.0)
  B = A - removed
  B[np.diag_indices_from(B)] += removed.sum(axis=0)
  return B


def check_round(A, tol=1e-6):
  """One round's A_t: non-negative and doubly stochastic (a single round need not be primitive)."""
  if (A < -tol).any() or np.abs(A.sum(axis=0) - 1).max() > tol or \
      np.abs(A.sum(axis=1) - 1).max() > tol:
    raise TopologyError("a round's combination matrix after link failures is not doubly "
                        f"stochastic:\n{np.round(A, 4)}\nUse topology.failure_rule=metropolis.")
  return A


class FaultySchedule(Schedule):
  """A base schedule (static, gossip, fusion, A = I) whose links fail and agents drop out.

  Each round t, every link of the base graph fails with probability ``link_failure`` and every
  agent is offline with probability ``agent_dropout``: an offline agent neither sends nor
  receives (its row and column of A_t are e_k) and does not adapt (``active``). Messages count
  the links that carried something.
  """

  random = True

  def __init__(self, base, num_agents, link_failure=0.0, agent_dropout=0.0,
               rule="metropolis", seed=0):
    super().__init__(num_agents, base.rounds)
    self.base = base
    self._edges = sorted({tuple(sorted(e)) for e in base.edges() if e[0] != e[1]})
    self.p, self.q, self.rule, self.seed = float(link_failure), float(agent_dropout), rule, seed
    self.has_dropouts = self.q > 0
    if rule == "self" and isinstance(base, StaticSchedule) and not np.allclose(base.A, base.A.T):
      raise TopologyError("topology.failure_rule=self keeps A_t doubly stochastic only for a "
                          "symmetric A; this A is not. Use topology.failure_rule=metropolis.")

  def edges(self):
    return self._edges

  def support(self):
    """Failures only remove links: who may talk is the base schedule's graph."""
    S = np.array(self.base.support(), bool)
    for a, b in self._edges:
      S[a, b] = S[b, a] = True
    return S

  def faults(self, t):
    """(failed links as a boolean per edge, offline agents as a boolean per agent) of round t."""
    rng = np.random.default_rng(seeds.faults(self.seed, t))
    return rng.random(len(self._edges)) < self.p, rng.random(self.K) < self.q

  def _cut(self, t):
    failed, offline = self.faults(t)
    cut = np.zeros((self.K, self.K), bool)
    for (a, b), f in zip(self._edges, failed):
      cut[a, b] = cut[b, a] = f
    cut[offline, :] = cut[:, offline] = True
    return cut

  def matrices(self, iteration):
    out = np.array(self.base.matrices(iteration), np.float64)
    for r in range(self.rounds):
      out[r] = check_round(degrade(out[r], self._cut(iteration * self.rounds + r), self.rule))
    return out

  def active(self, iteration):
    return np.stack([~self.faults(iteration * self.rounds + r)[1]
                     for r in range(self.rounds)]).astype(np.float32)

  def count_messages(self, A):
    return self.base.count_messages(A)


def with_faults(schedule, config_topology, seed=0):
  """The schedule with the config's link failures and dropouts; unchanged when both are 0, so
  p = q = 0 is exactly the fault-free run. E[A_t] must satisfy Assumption 1 unless the network
  does not cooperate (A = I: dropouts only pause agents)."""
  t = config_topology
  if not t.link_failure and not t.agent_dropout:
    return schedule
  faulty = FaultySchedule(schedule, schedule.K, t.link_failure, t.agent_dropout,
                          t.failure_rule, seed)
  if np.allclose(schedule.mean_matrix(), np.eye(schedule.K)):
    return faulty
  try:
    topology.check_assumption1(faulty.mean_matrix(), schedule.K)
  except TopologyError as e:
    raise TopologyError(f"with topology.link_failure={t.link_failure} and agent_dropout="
                        f"{t.agent_dropout}, E[A_t] breaks Assumption 1: {e}") from e
  return faulty


def mean_square_rate(schedule, sample_iterations=SAMPLE_ITERATIONS):
  """lambda_max(E[A_t A_t^T] - 11^T/K): the per-round contraction of the mean-square
  disagreement of W_new = A_t^T W under a random schedule (lambda_2^2 for a static symmetric
  A). Not E[A_t^T A_t]: the two differ for a non-symmetric A_t."""
  mats = np.concatenate([schedule.matrices(i) for i in range(sample_iterations)])
  K = mats.shape[1]
  M = np.mean(np.einsum("rkl,rjl->rkj", mats, mats), axis=0) - np.ones((K, K)) / K
  return float(max(np.linalg.eigvalsh((M + M.T) / 2).max(), 0.0))


def base_schedule(config, num_agents):
  """The mode's schedule before faults.

  diffusion: A from the topology every round; noncooperative: A = I; centralized: one GAN on the
  union of the shards (K = 1); fusion: the network mean of D and G every
  topology.fusion_period iterations (FedGAN); gossip: random pairwise averaging over the graph's edges.
  """
  mode, K, t = config.train.mode, num_agents, config.topology
  rounds = config.train.n_d + config.train.n_g
  if mode == "centralized":
    return StaticSchedule(np.ones((1, 1)), rounds)
  if mode == "noncooperative":
    return StaticSchedule(np.eye(K), rounds)
  if mode == "fusion":
    return FusionSchedule(K, t.fusion_period, config.train.n_d, config.train.n_g)
  if mode == "gossip":
    graph = topology.make_graph(t.graph, K, seed=seeds.graph(config.seed), p=t.p, k=t.k,
                                edge_list=t.edge_list)
    return GossipSchedule(graph, rounds, seed=seeds.graph(config.seed))
  return StaticSchedule(topology.combination_matrix(t, K, seed=seeds.graph(config.seed)), rounds)


def build(config, num_agents):
  """The run's schedule: the mode's, with the topology's link failures and agent dropouts."""
  schedule = base_schedule(config, num_agents)
  if schedule.K == 1:
    return schedule
  return with_faults(schedule, config.topology, seed=seeds.graph(config.seed))


def check_config(config):
  """The schedule's own fields: faults against the mode, the fusion period."""
  t, mode = config.topology, config.train.mode
  for field in ("link_failure", "agent_dropout"):
    value = t[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
      raise TopologyError(f"topology.{field}={value!r} must be a probability in [0, 1); "
                          f"set --config.topology.{field}=0.1, say (0 turns it off).")
  check_choice(t.failure_rule, FAILURE_RULES, "topology.failure_rule", TopologyError)
  if t.link_failure and mode not in ("diffusion", "gossip"):
    raise TopologyError(f"topology.link_failure applies to the graph of train.mode=diffusion or "
                        f"gossip; train.mode={mode} has no links between agents. Set it to 0.")
  if t.agent_dropout and mode == "centralized":
    raise TopologyError("topology.agent_dropout needs agents; train.mode=centralized trains one "
                        "GAN. Set it to 0.")
  if mode == "fusion" and (isinstance(t.fusion_period, bool) or
                           not isinstance(t.fusion_period, int) or t.fusion_period < 1):
    raise TopologyError(f"topology.fusion_period={t.fusion_period!r} must be a positive "
                        "integer (iterations between network averages).")
