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


def test_fusion_schedule_averages_every_period_and_counts_messages():
  s = topology.FusionSchedule(4, period=3, rounds=6)
  mats = s.matrices(0)
  avg = [np.allclose(m, 0.25) for m in mats]
  assert avg == [False, False, True, False, False, True]
  assert all(np.allclose(m, np.eye(4)) for m, a in zip(mats, avg) if not a)
  np.testing.assert_array_equal(s.messages(0), [0, 0, 8, 0, 0, 8])
  # the period runs across iterations: period 4 with 6 rounds averages at global rounds 3, 7, 11
  s4 = topology.FusionSchedule(4, period=4, rounds=6)
  assert [i for i in range(6) if np.allclose(s4.matrices(1)[i], 0.25)] == [1, 5]


def test_gossip_schedule_is_doubly_stochastic_pairwise_and_reproducible():
  g = topology.make_graph("paper5", 5)
  s = topology.GossipSchedule(g, rounds=6, seed=1)
  mats = s.matrices(3)
  for r, m in enumerate(mats):
    np.testing.assert_allclose(m.sum(0), 1)
    np.testing.assert_allclose(m, m.T)
    pairs = s.matching(3 * 6 + r)
    assert pairs and all(g.has_edge(a, b) for a, b in pairs)
    assert len({x for p in pairs for x in p}) == 2 * len(pairs)  # a matching: disjoint pairs
  np.testing.assert_array_equal(mats, topology.GossipSchedule(g, 6, seed=1).matrices(3))
  assert (s.messages(3) == [2 * len(s.matching(18 + r)) for r in range(6)]).all()
  # averaged over many rounds the gossip matrix mixes like a connected graph
  mean = np.mean([s.matrices(i) for i in range(100)], axis=(0, 1))
  assert topology.lambda2(mean) < 1


def test_static_schedule_counts_links():
  A = topology.metropolis(topology.make_graph("paper5", 5))
  s = topology.StaticSchedule(A, rounds=6)
  assert (s.messages(0) == 12).all()  # 6 undirected edges, both directions
  np.testing.assert_array_equal(s.matrices(7)[2], A)


def test_spectral_factor():
  """sum over the non-Perron eigenvalues of lambda^2 / (1 - lambda^2): 0 for exact averaging,
  and for the 6-ring (eigenvalues 1, 2/3, 2/3, 0, 0, -1/3) 2 * 0.8 + 0.125 = 1.725."""
  assert topology.spectral_factor(np.full((6, 6), 1 / 6)) == pytest.approx(0.0, abs=1e-9)
  ring = topology.metropolis(topology.make_graph("ring", 6))
  assert topology.spectral_factor(ring) == pytest.approx(1.725, abs=1e-6)


def _faulty(p=0.3, q=0.0, rule="metropolis", graph="paper5", K=5, rounds=6, seed=2):
  A = topology.metropolis(topology.make_graph(graph, K))
  return topology.FaultySchedule(topology.StaticSchedule(A, rounds),
                                 topology.make_graph(graph, K).edges, K, p, q, rule, seed), A


@pytest.mark.parametrize("rule", ["metropolis", "self"])
def test_link_failure_rounds_are_doubly_stochastic_and_reproducible(rule):
  s, A = _faulty(p=0.4, q=0.2, rule=rule)
  changed = 0
  for i in range(30):
    mats, active = s.matrices(i), s.active(i)
    for r, M in enumerate(mats):
      assert (M >= 0).all()
      np.testing.assert_allclose(M.sum(axis=0), 1, atol=1e-12)
      np.testing.assert_allclose(M.sum(axis=1), 1, atol=1e-12)
      failed, offline = s.faults(i * 6 + r)
      for k in np.flatnonzero(offline):  # offline: row and column are e_k, and no adapt
        np.testing.assert_array_equal(M[:, k], np.eye(5)[k])
        np.testing.assert_array_equal(M[k, :], np.eye(5)[k])
        assert active[r, k] == 0
      for (a, b), f in zip(s.edges, failed):
        if f:
          assert M[a, b] == M[b, a] == 0
      assert (active[r] == ~offline).all()
      # only links that carried weight are counted
      assert s.messages(i)[r] == np.count_nonzero(M - np.diag(np.diag(M)))
      changed += not np.allclose(M, A)
  assert changed > 0
  again, _ = _faulty(p=0.4, q=0.2, rule=rule)  # a resumed run draws the same rounds
  np.testing.assert_array_equal(again.matrices(17), s.matrices(17))
  np.testing.assert_array_equal(again.active(17), s.active(17))


def test_surviving_metropolis_recomputes_weights():
  s, A = _faulty(p=0.5, seed=0)
  for t in range(20):
    failed, _ = s.faults(t)
    if failed.any():
      alive = [e for e, f in zip(s.edges, failed) if not f]
      import networkx as nx  # pylint: disable=g-import-not-at-top
      g = nx.Graph(alive)
      g.add_nodes_from(range(5))
      np.testing.assert_allclose(s.matrices(t // 6)[t % 6], topology.metropolis(g), atol=1e-12)
      return
  raise AssertionError("no round with a failed link")


def test_no_faults_is_exactly_the_static_schedule():
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  A = topology.metropolis(topology.make_graph("paper5", 5))
  static = topology.StaticSchedule(A, 6)
  t = ConfigDict(dict(link_failure=0.0, agent_dropout=0.0, failure_rule="metropolis"))
  schedule, mean = topology.with_faults(static, A, t)
  assert schedule is static and mean is A
  s, _ = _faulty(p=0.0)
  np.testing.assert_array_equal(s.matrices(3), static.matrices(3))
  np.testing.assert_array_equal(s.messages(3), static.messages(3))
  assert (s.active(3) == 1).all() and (static.active(3) == 1).all()


def test_expected_matrix_and_mean_square_rate():
  """E[A_t] keeps Assumption 1; the rate of a random schedule is lambda_max(E[A^T A] - 11^T/K),
  which equals lambda_2^2 for a static symmetric A and grows with the failure probability."""
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  A = topology.metropolis(topology.make_graph("paper5", 5))
  static = topology.StaticSchedule(A, 6)
  assert topology.mean_square_rate(static, 3) == pytest.approx(topology.lambda2(A) ** 2)
  rates = []
  for p in (0.1, 0.3, 0.5):
    t = ConfigDict(dict(link_failure=p, agent_dropout=0.0, failure_rule="metropolis"))
    schedule, mean = topology.with_faults(static, A, t, seed=1, sample_iterations=100)
    topology.check_assumption1(mean, 5)
    rates.append(topology.rate(schedule, mean))
  assert topology.lambda2(A) < rates[0] < rates[1] < rates[2] < 1


def test_self_rule_needs_a_symmetric_matrix():
  A = 0.5 * np.eye(3) + 0.5 * np.roll(np.eye(3), 1, axis=1)  # doubly stochastic, not symmetric
  with pytest.raises(TopologyError, match="failure_rule=self .* symmetric"):
    topology.FaultySchedule(topology.StaticSchedule(A, 2), [(0, 1), (1, 2), (0, 2)], 3, 0.2,
                            rule="self")


def test_gossip_and_fusion_with_faults():
  g = topology.make_graph("paper5", 5)
  gossip = topology.GossipSchedule(g, rounds=6, seed=1)
  s = topology.FaultySchedule(gossip, gossip.edges, 5, link_failure=0.5, agent_dropout=0.2)
  for i in range(10):
    for M, full, sent in zip(s.matrices(i), gossip.matrices(i), s.messages(i)):
      np.testing.assert_allclose(M.sum(0), 1)
      assert set(np.flatnonzero(M - np.diag(np.diag(M)))) <= set(
          np.flatnonzero(full - np.diag(np.diag(full))))  # a failed pair does not average
      assert sent == np.count_nonzero(M - np.diag(np.diag(M)))
  fusion = topology.FusionSchedule(4, period=1, rounds=3)
  s = topology.FaultySchedule(fusion, [], 4, agent_dropout=0.5, seed=3)
  for i in range(10):
    for r, M in enumerate(s.matrices(i)):
      online = s.active(i)[r] > 0
      if online.sum() > 1:  # the online agents average among themselves
        np.testing.assert_allclose(M[np.ix_(online, online)], 1 / online.sum())
      assert s.messages(i)[r] == (2 * online.sum() if online.sum() > 1 else 0)
