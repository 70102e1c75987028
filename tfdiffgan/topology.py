"""Topology: graphs, combination rules and the checks of Assumption 1.

Everything returns a plain K x K numpy matrix A = [a_lk] with the paper's convention: column k
holds the weights agent k gives its neighbours l, so the combine step is w_k = sum_l a_lk phi_l
(eq. 10b), i.e. W_new = A^T Phi.
"""

import networkx as nx
import numpy as np
from tfdiffgan.errors import TopologyError

# The paper's Fig. 2 shows a connected 5-agent network without an edge list; this is our choice
# in its spirit: a ring of five with one chord, so degrees differ and Metropolis weights matter.
PAPER5_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2))

GRAPHS = ("paper5", "ring", "grid", "complete", "star", "erdos_renyi", "small_world", "file")
RULES = ("metropolis", "uniform", "file")




def make_graph(name, num_agents, seed=0, p=0.5, k=2, edge_list=""):
  """Builds a networkx graph on nodes 0..K-1."""
  K = num_agents
  if name == "paper5":
    if K != 5:
      raise TopologyError(f"graph 'paper5' has 5 agents but num_agents={K}; set "
                          "--config.num_agents=5 or choose another graph (ring, grid, ...).")
    g = nx.Graph(PAPER5_EDGES)
  elif name == "ring":
    g = nx.cycle_graph(K) if K > 2 else nx.path_graph(K)
  elif name == "grid":
    rows = int(np.floor(np.sqrt(K)))
    while K % rows:
      rows -= 1
    g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, K // rows))
  elif name == "complete":
    g = nx.complete_graph(K)
  elif name == "star":
    g = nx.star_graph(K - 1)
  elif name == "erdos_renyi":
    rng = np.random.default_rng(seed)
    for _ in range(1000):  # resample until connected
      g = nx.erdos_renyi_graph(K, p, seed=int(rng.integers(2**31)))
      if nx.is_connected(g):
        break
    else:
      raise TopologyError(f"no connected Erdos-Renyi graph with K={K}, p={p} in 1000 draws; "
                          "raise topology.p.")
  elif name == "small_world":
    g = nx.connected_watts_strogatz_graph(K, max(2, k), 0.3, seed=seed)
  elif name == "file":
    g = read_edge_list(edge_list)
  else:
    raise TopologyError(f"unknown graph {name!r}; choose one of {GRAPHS}.")
  g.add_nodes_from(range(K))
  if g.number_of_nodes() != K or set(g.nodes) != set(range(K)):
    raise TopologyError(f"the graph has nodes {sorted(g.nodes)} but num_agents={K}; nodes must "
                        f"be 0..{K - 1}. Fix the edge list or num_agents.")
  if K > 1 and not nx.is_connected(g):
    parts = [sorted(c) for c in nx.connected_components(g)]
    raise TopologyError(f"the graph is not connected (components {parts}), so information "
                        "cannot diffuse between them (Assumption 1). Add an edge between the "
                        "components.")
  return g


def read_edge_list(path):
  """Reads 'l k' pairs, one per line; '#' starts a comment."""
  if not path:
    raise TopologyError("topology.graph='file' needs topology.edge_list=PATH.")
  g = nx.Graph()
  try:
    with open(path) as f:
      for n, line in enumerate(f, 1):
        line = line.split("#")[0].strip()
        if not line:
          continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
          raise TopologyError(f"{path}:{n}: expected two node ids 'l k', got {line!r}.")
        g.add_edge(int(parts[0]), int(parts[1]))
  except OSError as e:
    raise TopologyError(f"cannot read edge list {path}: {e}.") from e
  except ValueError as e:
    if isinstance(e, TopologyError):
      raise
    raise TopologyError(f"{path}: node ids must be integers ({e}).") from e
  return g


def metropolis(graph):
  """Metropolis rule [Sayed 2014, eq. (8.100)]: a_lk = 1/max(n_k, n_l) for neighbours l != k,
  where n_k counts agent k's neighbourhood including itself; a_kk takes the rest. Symmetric,
  hence doubly stochastic, for any connected graph."""
  K = graph.number_of_nodes()
  deg = np.array([graph.degree(k) + 1 for k in range(K)], float)
  A = np.zeros((K, K))
  for l, k in graph.edges:
    if l != k:
      A[l, k] = A[k, l] = 1.0 / max(deg[l], deg[k])
  A[np.diag_indices(K)] = 1.0 - A.sum(axis=0)
  return A


def uniform(graph):
  """Averaging rule a_lk = 1/n_k over the neighbourhood: left-stochastic, and doubly stochastic
  only on regular graphs (Assumption 1 then rejects it elsewhere)."""
  K = graph.number_of_nodes()
  A = nx.to_numpy_array(graph, nodelist=range(K)) + np.eye(K)
  A = (A > 0).astype(float)
  return A / A.sum(axis=0, keepdims=True)


def read_matrix(path):
  try:
    return np.loadtxt(path, delimiter=None, ndmin=2)
  except (OSError, ValueError) as e:
    raise TopologyError(f"cannot read combination matrix {path}: {e}. Write K rows of K "
                        "numbers separated by spaces.") from e


def is_primitive(A):
  """Wielandt: a non-negative K x K matrix is primitive iff A^((K-1)^2 + 1) > 0 entrywise."""
  K = A.shape[0]
  P = (A > 0).astype(np.int64)
  M = np.eye(K, dtype=np.int64)
  e, base = (K - 1) ** 2 + 1, P
  while e:  # boolean fast exponentiation
    if e & 1:
      M = (M @ base > 0).astype(np.int64)
    base = (base @ base > 0).astype(np.int64)
    e >>= 1
  return bool(M.all())


def lambda2(A):
  """lambda_2 = rho(A - 11^T/K), eq. (11): the rate at which the combine contracts disagreement."""
  K = A.shape[0]
  return float(np.max(np.abs(np.linalg.eigvals(A - np.ones((K, K)) / K)))) if K > 1 else 0.0


def spectral_factor(A):
  """sum_{j>=2} lambda_j^2 / (1 - lambda_j^2) over the eigenvalues of a symmetric A other than
  the Perron 1: the stationary disagreement of diffusion driven by i.i.d. gradient noise, per
  unit of mu^2 sigma^2. Theorem 1 bounds it through lambda_2 alone (lambda_2^2 / (1 - lambda_2)^2),
  so two graphs with different lambda_2 can still disagree alike."""
  A = np.asarray(A, np.float64)
  if A.shape[0] < 2 or not np.allclose(A, A.T):
    return None
  lam = np.sort(np.abs(np.linalg.eigvalsh(A)))[::-1][1:]
  return float(np.sum(lam ** 2 / np.maximum(1 - lam ** 2, 1e-12)))


def check_assumption1(A, num_agents=None, tol=1e-6):
  """Raises TopologyError unless A is square K x K, non-negative, doubly stochastic and primitive."""
  A = np.asarray(A, float)
  if A.ndim != 2 or A.shape[0] != A.shape[1]:
    raise TopologyError(f"the combination matrix has shape {A.shape}; it must be square K x K.")
  if num_agents is not None and A.shape[0] != num_agents:
    raise TopologyError(f"the combination matrix is {A.shape[0]} x {A.shape[0]} but there are "
                        f"{num_agents} agents; make them match.")
  if not np.all(np.isfinite(A)) or (A < -tol).any():
    raise TopologyError("the combination matrix has negative or non-finite entries; "
                        "Assumption 1 needs a_lk >= 0.")
  cols, rows = A.sum(axis=0), A.sum(axis=1)
  if np.abs(cols - 1).max() > tol or np.abs(rows - 1).max() > tol:
    raise TopologyError(
        "the combination matrix is not doubly stochastic (column sums "
        f"{np.round(cols, 6).tolist()}, row sums {np.round(rows, 6).tolist()}); Assumption 1 "
        "needs both to be 1. Use topology.rule='metropolis', which is doubly stochastic on any "
        "connected graph.")
  if not is_primitive(A):
    raise TopologyError("the combination matrix is not primitive (its graph is disconnected or "
                        "periodic), so agents never agree. Connect the graph and give some agent "
                        "a self-weight a_kk > 0.")
  return A


def combination_matrix(config_topology, num_agents, seed=0):
  """The K x K matrix named by the config's topology block, checked against Assumption 1."""
  t = config_topology
  if t.rule == "file":
    A = read_matrix(t.matrix_file)
  else:
    g = make_graph(t.graph, num_agents, seed=seed, p=t.p, k=t.k, edge_list=t.edge_list)
    if t.rule == "metropolis":
      A = metropolis(g)
    elif t.rule == "uniform":
      A = uniform(g)
    else:
      raise TopologyError(f"unknown topology.rule {t.rule!r}; choose one of {RULES}.")
  return check_assumption1(A, num_agents)


# ------------------------------------------------------------------ combination schedules
#
# A schedule gives the combination matrix of every ATC round, so the baselines the paper cites
# run in the same compiled step as diffusion. Each also counts the messages it costs: one message
# is one agent's parameter vector (D's or G's) sent over one link.


class StaticSchedule:
  """The same A every round: diffusion (Metropolis, ...) and non-cooperative (A = I).
  Every agent sends phi_l to each neighbour k with a_lk > 0: one message per off-diagonal link."""

  def __init__(self, A, rounds):
    self.A, self.rounds = np.asarray(A, float), rounds
    off = self.A.copy()
    np.fill_diagonal(off, 0)
    self.links = int(np.count_nonzero(off))

  def matrices(self, iteration):
    del iteration
    return np.repeat(self.A[None], self.rounds, axis=0)

  def support(self):
    """Which a_lk can ever be non-zero: who may talk to whom (the neighbors exchange's pairs)."""
    return self.A != 0

  def messages(self, iteration):
    del iteration
    return np.full(self.rounds, self.links)

  def active(self, iteration):
    """Who adapts in each round [rounds, K]: every agent (FaultySchedule drops some)."""
    del iteration
    return np.ones((self.rounds, self.A.shape[0]), np.float32)

  count_messages = staticmethod(lambda A: _count_links(A))


class FusionSchedule:
  """A fusion center in the manner of FedGAN: every ``period`` rounds all agents upload and take
  the network mean (A = 11^T/K: K uploads + K downloads); local rounds (A = I) in between."""

  def __init__(self, num_agents, period, rounds):
    if period < 1:
      raise TopologyError(f"topology.fusion_period={period} must be >= 1.")
    self.K, self.period, self.rounds = num_agents, int(period), rounds

  def _averaging(self, iteration):
    t = iteration * self.rounds + np.arange(self.rounds)
    return (t + 1) % self.period == 0

  def support(self):
    return np.ones((self.K, self.K), bool)  # the fusion center's average reaches everyone

  def matrices(self, iteration):
    avg = self._averaging(iteration)
    mean, eye = np.full((self.K, self.K), 1.0 / self.K), np.eye(self.K)
    return np.stack([mean if a else eye for a in avg])

  def messages(self, iteration):
    return np.where(self._averaging(iteration), 2 * self.K, 0)

  def active(self, iteration):
    del iteration
    return np.ones((self.rounds, self.K), np.float32)

  @staticmethod
  def count_messages(A):
    """An upload and a download per agent that takes part in the average (a_kk < 1)."""
    taking_part = int(np.count_nonzero(np.diag(A) < 1 - 1e-12))
    return 2 * taking_part if taking_part > 1 else 0


class GossipSchedule:
  """Randomized pairwise gossip: each round a random maximal matching of the graph's edges, and
  each matched pair averages (a_ii = a_jj = a_ij = a_ji = 1/2). Seeded by (seed, round), so a
  resumed run draws the same matchings."""

  def __init__(self, graph, rounds, seed=0):
    self.edges = sorted(tuple(sorted(e)) for e in graph.edges if e[0] != e[1])
    self.K, self.rounds, self.seed = graph.number_of_nodes(), rounds, seed

  def support(self):
    S = np.eye(self.K, dtype=bool)
    for a, b in self.edges:
      S[a, b] = S[b, a] = True
    return S

  def matching(self, t):
    rng = np.random.default_rng([self.seed, t])
    used, pairs = set(), []
    for i in rng.permutation(len(self.edges)):
      a, b = self.edges[i]
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

  random = True

  def active(self, iteration):
    del iteration
    return np.ones((self.rounds, self.K), np.float32)

  count_messages = staticmethod(lambda A: _count_links(A))


# ----------------------------------------------------------------- faults of the network
#
# Links that drop and agents that go offline, drawn afresh each round from (seed, round), so a
# resumed run draws the same. Each round's A_t is rebuilt on what survives and stays doubly
# stochastic; E[A_t] must satisfy Assumption 1, and the rate that governs a random schedule is
# lambda_max(E[A_t^T A_t] - 11^T/K) (the mean-square contraction of disagreement per round).

FAILURE_RULES = ("metropolis", "self")


def check_faults(config):
  """Raises TopologyError unless the fault fields fit the mode (called by config.validate)."""
  t, mode = config.topology, config.train.mode
  for field in ("link_failure", "agent_dropout"):
    value = t[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
      raise TopologyError(f"topology.{field}={value!r} must be a probability in [0, 1); "
                          f"set --config.topology.{field}=0.1, say (0 turns it off).")
  if t.failure_rule not in FAILURE_RULES:
    raise TopologyError(f"topology.failure_rule={t.failure_rule!r} is not one of "
                        f"{FAILURE_RULES}; set --config.topology.failure_rule=metropolis.")
  if t.link_failure and mode not in ("diffusion", "gossip"):
    raise TopologyError(f"topology.link_failure applies to the graph of train.mode=diffusion or "
                        f"gossip; train.mode={mode} has no links between agents. Set it to 0.")
  if t.agent_dropout and mode == "centralized":
    raise TopologyError("topology.agent_dropout needs agents; train.mode=centralized trains one "
                        "GAN. Set it to 0.")


def metropolis_matrix(adjacency):
  """Metropolis weights from a boolean K x K adjacency (no networkx: it runs every round)."""
  adj = np.array(adjacency, bool)
  np.fill_diagonal(adj, False)
  adj |= adj.T
  deg = adj.sum(axis=0) + 1.0
  A = np.where(adj, 1.0 / np.maximum.outer(deg, deg), 0.0)
  A[np.diag_indices_from(A)] = 1.0 - A.sum(axis=0)
  return A


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
    return metropolis_matrix((A > 0) & ~cut)
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


def _count_links(A):
  off = np.array(A, float)
  np.fill_diagonal(off, 0)
  return int(np.count_nonzero(off > 0))


class FaultySchedule:
  """A base schedule (static, gossip, fusion, A = I) whose links fail and agents drop out.

  Each round t, every link of the base graph fails with probability ``link_failure`` and every
  agent is offline with probability ``agent_dropout``: an offline agent neither sends nor
  receives (its row and column of A_t are e_k) and does not adapt (``active``). Messages count
  the links that carried something.
  """

  random = True

  def __init__(self, base, edges, num_agents, link_failure=0.0, agent_dropout=0.0,
               rule="metropolis", seed=0):
    self.base, self.K, self.rounds = base, num_agents, base.rounds
    self.edges = sorted({tuple(sorted(e)) for e in edges if e[0] != e[1]})
    self.p, self.q, self.rule, self.seed = float(link_failure), float(agent_dropout), rule, seed
    if rule == "self" and isinstance(base, StaticSchedule) and not np.allclose(base.A, base.A.T):
      raise TopologyError("topology.failure_rule=self keeps A_t doubly stochastic only for a "
                          "symmetric A; this A is not. Use topology.failure_rule=metropolis.")

  def support(self):
    """Failures only remove links: who may talk is the base schedule's graph."""
    S = np.array(self.base.support(), bool)
    for a, b in self.edges:
      S[a, b] = S[b, a] = True
    return S

  def faults(self, t):
    """(failed links as a boolean per edge, offline agents as a boolean per agent) of round t."""
    rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0xFA17, t])
    return rng.random(len(self.edges)) < self.p, rng.random(self.K) < self.q

  def _cut(self, t):
    failed, offline = self.faults(t)
    cut = np.zeros((self.K, self.K), bool)
    for (a, b), f in zip(self.edges, failed):
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

  def messages(self, iteration):
    return np.array([self.base.count_messages(A) for A in self.matrices(iteration)])


def _base_edges(schedule):
  if isinstance(schedule, GossipSchedule):
    return schedule.edges
  if isinstance(schedule, StaticSchedule):
    return [tuple(e) for e in np.argwhere(schedule.A + schedule.A.T > 0)]
  return []


def with_faults(schedule, A, config_topology, seed=0, sample_iterations=200):
  """(schedule, E[A_t]) with the config's link failures and dropouts; unchanged when both are 0,
  so p = q = 0 is exactly the fault-free run."""
  t = config_topology
  if not t.link_failure and not t.agent_dropout:
    return schedule, A
  faulty = FaultySchedule(schedule, _base_edges(schedule), A.shape[0], t.link_failure,
                          t.agent_dropout, t.failure_rule, seed)
  mean = np.mean([faulty.matrices(i) for i in range(sample_iterations)], axis=(0, 1))
  try:
    check_assumption1(mean, A.shape[0])
  except TopologyError as e:
    raise TopologyError(f"with topology.link_failure={t.link_failure} and agent_dropout="
                        f"{t.agent_dropout}, E[A_t] breaks Assumption 1: {e}") from e
  return faulty, mean


def mean_square_rate(schedule, sample_iterations=200):
  """lambda_max(E[A_t^T A_t] - 11^T/K): the per-round contraction of the mean-square
  disagreement under a random schedule (lambda_2^2 for a static symmetric A)."""
  mats = np.concatenate([schedule.matrices(i) for i in range(sample_iterations)])
  K = mats.shape[1]
  M = np.mean(np.einsum("rlk,rlj->rkj", mats, mats), axis=0) - np.ones((K, K)) / K
  return float(max(np.linalg.eigvalsh((M + M.T) / 2).max(), 0.0))


def rate(schedule, A):
  """The lambda_2 to report: rho(A - 11^T/K) for a deterministic schedule; for a random one the
  root of its mean-square rate, comparable with a static lambda_2 (lambda_2 of E[A_t] is not
  what governs it)."""
  if getattr(schedule, "random", False):
    return float(np.sqrt(mean_square_rate(schedule)))
  return lambda2(A)


def step_inputs(schedule, iteration):
  """The step's keyword arguments for one iteration: nothing for a static schedule (its A is
  compiled into the step), the rounds' matrices otherwise, and who adapts when agents drop out."""
  if isinstance(schedule, StaticSchedule):
    return {}
  inputs = {"matrices": schedule.matrices(iteration)}
  if getattr(schedule, "q", 0):
    inputs["active"] = schedule.active(iteration)
  return inputs
