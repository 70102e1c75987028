"""Combination schedules behind one interface: static, fusion, gossip and faulty rounds are
doubly stochastic, count their messages, say what the step needs and are reproducible; the
rate of a random schedule follows W_new = A_t^T W."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from tfdiffgan import schedule
from tfdiffgan import topology
from tfdiffgan.configs import default
from tfdiffgan.topology import TopologyError

P4 = np.roll(np.eye(4), 1, axis=1)              # the cycle 0 -> 1 -> 2 -> 3 -> 0
SWAP = np.eye(4)[[1, 0, 2, 3]]                   # the transposition (0 1)
# doubly stochastic and not normal (A A^T != A^T A): two permutations that do not commute
NONNORMAL = 0.4 * np.eye(4) + 0.4 * P4 + 0.2 * SWAP


def _config(mode, **topology_fields):
  c = default.get_config()
  c.train.mode = mode
  for key, value in topology_fields.items():
    c.topology[key] = value
  return c


@pytest.mark.parametrize("mode,faults", [
    ("diffusion", {}), ("noncooperative", {}), ("fusion", {}), ("gossip", {}),
    ("diffusion", {"link_failure": 0.3, "agent_dropout": 0.2}),
    ("gossip", {"link_failure": 0.3}), ("fusion", {"agent_dropout": 0.2}),
    ("noncooperative", {"agent_dropout": 0.2})])
def test_every_schedule_keeps_the_interface(mode, faults):
  s = schedule.build(_config(mode, **faults), 5)
  assert s.K == 5 and s.rounds == 6
  for i in (0, 7):
    mats, active = s.matrices(i), s.active(i)
    assert mats.shape == (6, 5, 5) and active.shape == (6, 5) and active.dtype == np.float32
    np.testing.assert_allclose(mats.sum(axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(mats.sum(axis=2), 1, atol=1e-12)
    assert not (mats[:, ~s.support()] != 0).any()  # only pairs in the support ever mix
    assert s.messages(i).shape == (6,)
    inputs = s.step_inputs(i)
    assert set(inputs) == ({"matrices", "active"} if faults.get("agent_dropout") else
                           set() if mode in ("diffusion", "noncooperative") and not faults
                           else {"matrices"})
    np.testing.assert_array_equal(schedule.build(_config(mode, **faults), 5).matrices(i), mats)
  assert s.random == (mode == "gossip" or bool(faults))
  np.testing.assert_allclose(s.mean_matrix().sum(axis=0), 1, atol=1e-12)
  assert 0 <= s.rate() <= 1 + 1e-12


def test_a_noncooperative_network_with_dropouts_only_pauses_agents():
  s = schedule.build(_config("noncooperative", agent_dropout=0.2), 3)
  paused = 0
  for i in range(10):
    np.testing.assert_array_equal(s.matrices(i), np.repeat(np.eye(3)[None], 6, axis=0))
    assert (s.messages(i) == 0).all()
    paused += int((s.active(i) == 0).sum())
  assert paused > 0 and set(s.step_inputs(0)) == {"matrices", "active"}
  assert s.rate() == pytest.approx(1.0)


def test_the_mean_square_rate_uses_a_a_transpose():
  """A non-normal A with link failures: the rate is lambda_max(E[A_t A_t^T] - J), checked
  against the contraction of the disagreement of W_new = A_t^T W measured round by round."""
  assert not np.allclose(NONNORMAL @ NONNORMAL.T, NONNORMAL.T @ NONNORMAL)
  static = schedule.StaticSchedule(NONNORMAL, 1)
  s = schedule.FaultySchedule(static, 4, link_failure=0.2, seed=5)
  mats = np.concatenate([s.matrices(i) for i in range(schedule.SAMPLE_ITERATIONS)])
  J = np.ones((4, 4)) / 4
  ref = np.linalg.eigvalsh(np.mean([A @ A.T for A in mats], axis=0) - J).max()
  wrong = np.linalg.eigvalsh(np.mean([A.T @ A for A in mats], axis=0) - J).max()
  assert abs(ref - wrong) > 1e-3  # the two orders differ for this A
  assert schedule.mean_square_rate(s) == pytest.approx(ref, rel=1e-12)
  # the worst direction's mean-square contraction, measured: ||(I - J) A_t^T v||^2 / ||v||^2
  v = np.linalg.eigh(np.mean([A @ A.T for A in mats], axis=0) - J)[1][:, -1]
  measured = np.mean([np.sum(((np.eye(4) - J) @ A.T @ v) ** 2) for A in mats])
  assert measured == pytest.approx(ref, rel=1e-9)


def test_fusion_mean_matrix_is_the_average_over_a_period():
  s = schedule.FusionSchedule(4, period=3, n_d=5, n_g=1)
  estimated = np.mean([s.matrices(i) for i in range(30)], axis=(0, 1))
  np.testing.assert_allclose(s.mean_matrix(), estimated, atol=1e-12)


def test_fusion_rate_is_the_mean_square_rate_with_and_without_faults():
  """Averaging rounds are J, the others I: E[A A^T] = E[A], so the rate is
  sqrt(1 - 2 / (rounds * period)); a fault wrapper that drops nothing estimates the same."""
  s = schedule.FusionSchedule(5, period=2, n_d=2, n_g=1)
  assert s.rate() == pytest.approx(np.sqrt(1 - 2 / 6), rel=1e-12)
  never = schedule.FaultySchedule(s, 5, agent_dropout=1e-12, seed=0)
  assert never.rate() == pytest.approx(s.rate(), rel=1e-12)


def test_schedule_fields_are_checked():
  with pytest.raises(TopologyError, match="link_failure applies to the graph"):
    schedule.check_config(_config("fusion", link_failure=0.1))
  with pytest.raises(TopologyError, match="agent_dropout needs agents"):
    schedule.check_config(_config("centralized", agent_dropout=0.1))
  with pytest.raises(TopologyError, match=r"agent_dropout=1.5 must be a probability"):
    schedule.check_config(_config("diffusion", agent_dropout=1.5))


def test_fusion_averages_d_and_g_after_their_last_rounds_every_period():
  """FedGAN: a synchronisation averages both networks; period 1 averages D after round n_d
  and G after the generator round, every iteration."""
  s = schedule.FusionSchedule(4, period=1, n_d=5, n_g=1)
  for i in range(3):
    avg = [np.allclose(m, 0.25) for m in s.matrices(i)]
    assert avg == [False, False, False, False, True, True]
    np.testing.assert_array_equal(s.messages(i), [0, 0, 0, 0, 8, 8])
  assert all(np.allclose(m, np.eye(4)) for m in s.matrices(0)[:4])
  # the period counts iterations: period 3 averages in iterations 2, 5, 8 only
  s3 = schedule.FusionSchedule(4, period=3, n_d=1, n_g=1)
  assert [i for i in range(9) if np.allclose(s3.matrices(i), 0.25)] == [2, 5, 8]
  assert all(np.allclose(s3.matrices(i), np.eye(4)) for i in (0, 1, 3, 4))


def test_gossip_schedule_is_doubly_stochastic_pairwise_and_reproducible():
  g = topology.make_graph("paper5", 5)
  s = schedule.GossipSchedule(g, rounds=6, seed=1)
  mats = s.matrices(3)
  for r, m in enumerate(mats):
    np.testing.assert_allclose(m.sum(0), 1)
    np.testing.assert_allclose(m, m.T)
    pairs = s.matching(3 * 6 + r)
    assert pairs and all(g.has_edge(a, b) for a, b in pairs)
    assert len({x for p in pairs for x in p}) == 2 * len(pairs)  # a matching: disjoint pairs
  np.testing.assert_array_equal(mats, schedule.GossipSchedule(g, 6, seed=1).matrices(3))
  assert (s.messages(3) == [2 * len(s.matching(18 + r)) for r in range(6)]).all()
  # averaged over many rounds the gossip matrix mixes like a connected graph
  mean = np.mean([s.matrices(i) for i in range(100)], axis=(0, 1))
  assert topology.lambda2(mean) < 1


def test_static_schedule_counts_links():
  A = topology.metropolis(topology.make_graph("paper5", 5))
  s = schedule.StaticSchedule(A, rounds=6)
  assert (s.messages(0) == 12).all()  # 6 undirected edges, both directions
  np.testing.assert_array_equal(s.matrices(7)[2], A)


def _faulty(p=0.3, q=0.0, rule="metropolis", graph="paper5", K=5, rounds=6, seed=2):
  A = topology.metropolis(topology.make_graph(graph, K))
  return schedule.FaultySchedule(schedule.StaticSchedule(A, rounds), K, p, q, rule, seed), A


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
      for (a, b), f in zip(s.edges(), failed):
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
      alive = [e for e, f in zip(s.edges(), failed) if not f]
      import networkx as nx  # pylint: disable=g-import-not-at-top
      g = nx.Graph(alive)
      g.add_nodes_from(range(5))
      np.testing.assert_allclose(s.matrices(t // 6)[t % 6], topology.metropolis(g), atol=1e-12)
      return
  raise AssertionError("no round with a failed link")


def test_no_faults_is_exactly_the_static_schedule():
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  A = topology.metropolis(topology.make_graph("paper5", 5))
  static = schedule.StaticSchedule(A, 6)
  t = ConfigDict(dict(link_failure=0.0, agent_dropout=0.0, failure_rule="metropolis"))
  assert schedule.with_faults(static, t) is static and static.mean_matrix() is A
  s, _ = _faulty(p=0.0)
  np.testing.assert_array_equal(s.matrices(3), static.matrices(3))
  np.testing.assert_array_equal(s.messages(3), static.messages(3))
  assert (s.active(3) == 1).all() and (static.active(3) == 1).all()


def test_expected_matrix_and_mean_square_rate():
  """E[A_t] keeps Assumption 1; the rate of a random schedule is lambda_max(E[A A^T] - 11^T/K),
  which equals lambda_2^2 for a static symmetric A and grows with the failure probability."""
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  A = topology.metropolis(topology.make_graph("paper5", 5))
  static = schedule.StaticSchedule(A, 6)
  assert schedule.mean_square_rate(static, 3) == pytest.approx(topology.lambda2(A) ** 2)
  rates = []
  for p in (0.1, 0.3, 0.5):
    t = ConfigDict(dict(link_failure=p, agent_dropout=0.0, failure_rule="metropolis"))
    faulty = schedule.with_faults(static, t, seed=1)
    topology.check_assumption1(faulty.mean_matrix(), 5)
    rates.append(faulty.rate())
  assert topology.lambda2(A) < rates[0] < rates[1] < rates[2] < 1


def test_self_rule_needs_a_symmetric_matrix():
  A = 0.5 * np.eye(3) + 0.5 * np.roll(np.eye(3), 1, axis=1)  # doubly stochastic, not symmetric
  with pytest.raises(TopologyError, match="failure_rule=self .* symmetric"):
    schedule.FaultySchedule(schedule.StaticSchedule(A, 2), 3, 0.2, rule="self")


def test_gossip_and_fusion_with_faults():
  g = topology.make_graph("paper5", 5)
  gossip = schedule.GossipSchedule(g, rounds=6, seed=1)
  s = schedule.FaultySchedule(gossip, 5, link_failure=0.5, agent_dropout=0.2)
  for i in range(10):
    for M, full, sent in zip(s.matrices(i), gossip.matrices(i), s.messages(i)):
      np.testing.assert_allclose(M.sum(0), 1)
      assert set(np.flatnonzero(M - np.diag(np.diag(M)))) <= set(
          np.flatnonzero(full - np.diag(np.diag(full))))  # a failed pair does not average
      assert sent == np.count_nonzero(M - np.diag(np.diag(M)))
  fusion = schedule.FusionSchedule(4, period=1, n_d=2, n_g=1)
  s = schedule.FaultySchedule(fusion, 4, agent_dropout=0.5, seed=3)
  for i in range(10):
    for r, (M, full) in enumerate(zip(s.matrices(i), fusion.matrices(i))):
      online = s.active(i)[r] > 0
      syncs = online.sum() > 1 and not np.allclose(full, np.eye(4))
      if syncs:  # the online agents average among themselves
        np.testing.assert_allclose(M[np.ix_(online, online)], 1 / online.sum())
      else:
        np.testing.assert_array_equal(M, np.eye(4))
      assert s.messages(i)[r] == (2 * online.sum() if syncs else 0)
