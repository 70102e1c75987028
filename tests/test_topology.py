"""Graphs, combination rules and the checks of Assumption 1."""

import numpy as np
import pytest

from tfdiffgan import topology
from tfdiffgan.topology import TopologyError


@pytest.mark.parametrize("graph,K", [("paper5", 5), ("ring", 6), ("grid", 6), ("complete", 4),
                                     ("star", 5), ("erdos_renyi", 8), ("small_world", 8)])
def test_metropolis_is_doubly_stochastic_and_primitive(graph, K):
  A = topology.metropolis(topology.make_graph(graph, K, seed=3))
  np.testing.assert_allclose(A.sum(axis=0), 1, atol=1e-12)
  np.testing.assert_allclose(A.sum(axis=1), 1, atol=1e-12)
  assert (A >= 0).all()
  topology.check_assumption1(A, K)
  assert 0 <= topology.lambda2(A) < 1


def test_lambda2_complete_graph_is_zero():
  A = topology.metropolis(topology.make_graph("complete", 6))
  np.testing.assert_allclose(A, np.full((6, 6), 1 / 6), atol=1e-12)
  assert topology.lambda2(A) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("K", [5, 8, 9])
def test_lambda2_ring_closed_form(K):
  # Metropolis on a ring: weights 1/3 on self and both neighbours, a circulant matrix with
  # eigenvalues 1/3 + 2/3 cos(2 pi j / K).
  A = topology.metropolis(topology.make_graph("ring", K))
  expected = max(abs(1 / 3 + 2 / 3 * np.cos(2 * np.pi * j / K)) for j in range(1, K))
  assert topology.lambda2(A) == pytest.approx(expected, abs=1e-12)


def test_disconnected_edge_list_is_refused(tmp_path):
  path = tmp_path / "edges.txt"
  path.write_text("0 1\n2 3  # two islands\n")
  with pytest.raises(TopologyError, match="not connected"):
    topology.make_graph("file", 4, edge_list=str(path))


def test_edge_list_file(tmp_path):
  path = tmp_path / "edges.txt"
  path.write_text("# a path\n0 1\n1 2\n")
  A = topology.metropolis(topology.make_graph("file", 3, edge_list=str(path)))
  assert A[0, 2] == 0 and A[0, 1] > 0
  topology.check_assumption1(A, 3)


def test_not_doubly_stochastic_is_refused():
  A = topology.uniform(topology.make_graph("star", 4))  # left-stochastic only: star is not regular
  with pytest.raises(TopologyError, match="not doubly stochastic"):
    topology.check_assumption1(A, 4)


def test_periodic_matrix_is_not_primitive():
  with pytest.raises(TopologyError, match="not primitive"):
    topology.check_assumption1(np.array([[0.0, 1.0], [1.0, 0.0]]), 2)


def test_wrong_size_and_negative_entries():
  with pytest.raises(TopologyError, match="3 agents"):
    topology.check_assumption1(np.eye(2), 3)
  with pytest.raises(TopologyError, match="negative"):
    topology.check_assumption1(np.array([[1.5, -0.5], [-0.5, 1.5]]), 2)
  with pytest.raises(TopologyError, match="square"):
    topology.check_assumption1(np.ones((2, 3)) / 3)


def test_paper5_needs_five_agents():
  with pytest.raises(TopologyError, match="5 agents"):
    topology.make_graph("paper5", 4)


def test_matrix_file(tmp_path):
  from ml_collections import ConfigDict
  path = tmp_path / "A.txt"
  np.savetxt(path, np.array([[0.5, 0.5], [0.5, 0.5]]))
  t = ConfigDict(dict(rule="file", matrix_file=str(path), graph="ring", p=0.5, k=2, edge_list=""))
  np.testing.assert_allclose(topology.combination_matrix(t, 2), 0.5)
  np.savetxt(path, np.array([[0.9, 0.5], [0.1, 0.5]]))
  with pytest.raises(TopologyError, match="doubly stochastic"):
    topology.combination_matrix(t, 2)


def test_spectral_factor():
  """sum over the non-Perron eigenvalues of lambda^2 / (1 - lambda^2): 0 for exact averaging,
  and for the 6-ring (eigenvalues 1, 2/3, 2/3, 0, 0, -1/3) 2 * 0.8 + 0.125 = 1.725."""
  assert topology.spectral_factor(np.full((6, 6), 1 / 6)) == pytest.approx(0.0, abs=1e-9)
  ring = topology.metropolis(topology.make_graph("ring", 6))
  assert topology.spectral_factor(ring) == pytest.approx(1.725, abs=1e-6)


def test_a_self_loop_in_an_edge_list_changes_no_weight(tmp_path):
  """'0 0' in an edge list: every agent has a self-weight anyway, so Metropolis is unchanged
  (networkx alone would count the loop twice in agent 0's degree)."""
  plain, looped = tmp_path / "plain.txt", tmp_path / "looped.txt"
  plain.write_text("0 1\n1 2\n2 3\n3 0\n")
  looped.write_text("0 0\n0 1\n1 2\n2 3\n3 0\n")
  A = topology.metropolis(topology.make_graph("file", 4, edge_list=str(plain)))
  B = topology.metropolis(topology.make_graph("file", 4, edge_list=str(looped)))
  np.testing.assert_array_equal(A, B)
  np.testing.assert_allclose(A[0], [1 / 3, 1 / 3, 0, 1 / 3])


def test_metropolis_of_a_graph_equals_metropolis_of_its_adjacency():
  g = topology.make_graph("erdos_renyi", 7, seed=1)
  adjacency = np.zeros((7, 7), bool)
  for a, b in g.edges:
    adjacency[a, b] = adjacency[b, a] = True
  np.testing.assert_array_equal(topology.metropolis(g), topology.metropolis_matrix(adjacency))
