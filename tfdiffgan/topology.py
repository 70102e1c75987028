"""Topology: graphs, combination rules and the checks of Assumption 1.

Everything returns a plain K x K numpy matrix A = [a_lk] with the paper's convention: column k
holds the weights agent k gives its neighbours l, so the combine step is w_k = sum_l a_lk phi_l
(eq. 10b), i.e. W_new = A^T Phi.
"""

import networkx as nx
import numpy as np
from tfdiffgan.errors import check_choice
from tfdiffgan.errors import TopologyError

# The paper's Fig. 2 shows a connected 5-agent network without an edge list; this is our choice
# in its spirit: a ring of five with one chord, so degrees differ and Metropolis weights matter.
PAPER5_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2))

GRAPHS = ("paper5", "ring", "grid", "complete", "star", "erdos_renyi", "small_world", "file")
RULES = ("metropolis", "uniform", "file")




def check_config(config):
  """The topology's own fields: the graph and the combination rule are known names."""
  t = config.topology
  check_choice(t.graph, GRAPHS, "topology.graph", TopologyError)
  check_choice(t.rule, RULES, "topology.rule", TopologyError)


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
  hence doubly stochastic, for any connected graph. A self-loop in the graph (an edge list's
  '0 0') adds nothing: every agent keeps a self-weight anyway."""
  K = graph.number_of_nodes()
  adjacency = np.zeros((K, K), bool)
  for l, k in graph.edges:
    adjacency[l, k] = adjacency[k, l] = True
  return metropolis_matrix(adjacency)


def metropolis_matrix(adjacency):
  """Metropolis weights from a boolean K x K adjacency, its diagonal ignored (no networkx: the
  fault schedules rebuild A_t with it every round)."""
  adj = np.array(adjacency, bool)
  np.fill_diagonal(adj, False)
  adj |= adj.T
  deg = adj.sum(axis=0) + 1.0
  A = np.where(adj, 1.0 / np.maximum.outer(deg, deg), 0.0)
  A[np.diag_indices_from(A)] = 1.0 - A.sum(axis=0)
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
