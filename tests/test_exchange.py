"""The exchange on tiny shapes: the combine w_k = sum_l a_lk phi_l against numpy with a
non-symmetric A, the worker pairs the neighbour exchange talks over, and which exchange
``train.exchange`` resolves to. The collectives themselves (allgather, neighbors over worker
processes) are checked end to end in tests/test_multiworker.py."""

import numpy as np
import pytest
import tensorflow as tf

from tfdiffgan import exchange, topology
from tfdiffgan.configs import default
from tfdiffgan.errors import ConfigError
from tfdiffgan.placement import Placement

# Doubly stochastic, not symmetric: A and A^T give different combines.
P = np.roll(np.eye(4), 1, axis=1)
NONSYMMETRIC = 0.5 * np.eye(4) + 0.3 * P + 0.2 * P.T


def _adjacency(graph):
  """The support of a networkx graph: 1 on its edges and the diagonal."""
  K = graph.number_of_nodes()
  A = np.eye(K)
  for a, b in graph.edges():
    A[a, b] = A[b, a] = 1
  return A


def test_mix_equals_numpy():
  rng = np.random.default_rng(0)
  A = topology.metropolis(topology.make_graph("ring", 4))
  phi = rng.normal(size=(4, 3, 5))
  got = exchange.mix(tf.constant(A, tf.float32), tf.constant(phi, tf.float32)).numpy()
  np.testing.assert_allclose(got, np.tensordot(A.T, phi, axes=1), atol=1e-6)  # w_k = sum_l a_lk phi_l


def test_mix_of_own_columns_is_w_k_sum_l_a_lk_phi_l_not_the_transpose():
  rng = np.random.default_rng(1)
  phi = rng.normal(size=(4, 7)).astype(np.float32)
  own = [2, 3]
  got = exchange.mix(tf.constant(NONSYMMETRIC[:, own], tf.float32), tf.constant(phi)).numpy()
  np.testing.assert_allclose(got, np.tensordot(NONSYMMETRIC.T, phi, axes=1)[own], atol=1e-6)
  assert not np.allclose(got, np.tensordot(NONSYMMETRIC, phi, axes=1)[own], atol=1e-3)


def test_local_exchange_combines_every_variable_with_a_transpose():
  rng = np.random.default_rng(2)
  phi = [rng.normal(size=(4, 3, 5)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)]
  local = exchange.make_exchange("local", Placement(4, 1))
  got = local.combine([tf.constant(p) for p in phi], tf.constant(NONSYMMETRIC, tf.float32))
  for g, p in zip(got, phi):
    np.testing.assert_allclose(g.numpy(), np.tensordot(NONSYMMETRIC.T, p, axes=1), atol=1e-6)


def test_local_exchange_needs_one_worker():
  with pytest.raises(ValueError, match="every agent in one replica"):
    exchange.LocalExchange(Placement(4, 2)).combine([tf.zeros([2, 3])], tf.eye(4), 0)


def test_flatten_then_unflatten_is_the_identity():
  rng = np.random.default_rng(3)
  phi = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in ((2, 3, 5), (2,), (2, 4))]
  flat, layout = exchange.flatten(phi)
  assert flat.shape == (2, 15 + 1 + 4)
  for a, b in zip(exchange.unflatten(flat, layout), phi):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_neighbour_pairs_are_the_worker_blocks_that_share_an_edge():
  ring = topology.make_graph("ring", 4)  # 0-1-2-3-0
  support = _adjacency(ring)
  two = exchange.make_exchange("neighbors", Placement(4, 2), support)
  assert two.pairs == [(0, 1)]               # blocks {0,1} and {2,3} touch by 1-2 and 3-0
  four = exchange.make_exchange("neighbors", Placement(4, 4), support)
  assert four.pairs == [(0, 1), (0, 3), (1, 2), (2, 3)]
  assert Placement(4, 4).neighbour_workers(support, 0) == [1, 3]
  path = np.eye(4) + np.diag(np.ones(3), 1) + np.diag(np.ones(3), -1)  # 0-1-2-3: no 3-0 edge
  assert exchange.make_exchange("neighbors", Placement(4, 4), path).pairs == [(0, 1), (1, 2),
                                                                             (2, 3)]


def test_make_exchange_refuses_an_unknown_name_and_neighbors_without_a_support():
  with pytest.raises(ValueError, match="unknown exchange 'ring'"):
    exchange.make_exchange("ring", Placement(4, 1))
  with pytest.raises(ValueError, match="needs the graph's support"):
    exchange.make_exchange("neighbors", Placement(4, 2))


@pytest.mark.parametrize("name, replicas, multiworker, resolved", [
    ("auto", 1, False, "local"),             # the default strategy
    ("auto", 2, False, "allgather"),         # mirrored
    ("auto", 2, True, "allgather"),          # multiworker
    ("neighbors", 2, False, "allgather"),    # in-process replicas share memory: nothing to pair
    ("neighbors", 2, True, "neighbors"),
    ("neighbors", 1, False, "local"),        # one replica: nobody to pair with
    ("neighbors", 1, True, "local"),
    ("allgather", 1, False, "allgather"),
    ("allgather", 4, True, "allgather"),
    ("local", 1, False, "local"),
])
def test_resolve_names_the_exchange_that_runs(name, replicas, multiworker, resolved):
  assert exchange.resolve(name, replicas, multiworker) == resolved


def test_resolve_refuses_local_over_several_replicas_and_unknown_names():
  with pytest.raises(ConfigError, match="the local exchange needs every agent in one replica"):
    exchange.resolve("local", 2)
  with pytest.raises(ConfigError, match=r"train.exchange='gossip' is not one of \('auto', 'local'"):
    exchange.resolve("gossip", 1)


@pytest.mark.parametrize("strategy", ["mirrored", "multiworker"])
def test_config_check_refuses_the_local_exchange_when_agents_are_spread(strategy):
  config = default.get_config()
  config.train.strategy, config.train.replicas, config.train.exchange = strategy, 5, "local"
  with pytest.raises(ConfigError, match=f"train.exchange=local keeps every agent in one replica, "
                                        f"but train.strategy={strategy} spreads them"):
    exchange.check_config(config)
  config.train.exchange = "neighbors"
  exchange.check_config(config)
