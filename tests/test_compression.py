"""Compressed diffusion (ACTC): the compressors' statistics, their bytes, and the step with them."""

import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tfdiffgan import compression
from tfdiffgan import config as config_lib
from tfdiffgan import run as run_lib
from tfdiffgan import schedule as schedule_lib
from tfdiffgan.errors import ConfigError


def _draws(compressor, x, n):
  """n independent compressions of the row x [P] (seeds [7, t], t = 0..n-1): [n, P]."""
  X = tf.tile(tf.constant(x[None], tf.float32), [n, 1])
  seeds = tf.stack([tf.fill([n], tf.constant(7, tf.int64)), tf.range(n, dtype=tf.int64)], 1)
  return compressor.roundtrip(X, seeds).numpy().astype(np.float64)


@pytest.mark.parametrize("bits,scale_bits", [(1, 32), (2, 32), (4, 32), (8, 32), (4, 8)])
def test_quantizer_is_unbiased_with_the_variance_its_bits_predict(bits, scale_bits):
  rng = np.random.default_rng(bits)
  x = (rng.normal(size=64) * np.repeat([1.0, 0.3, 0.05, 2.0], 16)).astype(np.float32)
  block = 16
  q = compression.Quantize(bits, block, scale_bits)
  n = 4000
  draws = _draws(q, x, n)
  # Predicted: per block s = max|x|, Delta = 2 s / (2^b - 1), f = frac((x + s) / Delta),
  # Var = f (1 - f) Delta^2 <= Delta^2 / 4.
  s = np.abs(x.reshape(-1, block)).max(axis=1).astype(np.float64)
  if scale_bits == 8:  # s' = m 2^(-c/16) >= s, c the largest such integer: within 2^(1/16)
    m = s.max()
    s_sent = m * 2.0 ** (-np.floor(16 * np.log2(m / s)) / 16)
    assert np.all(s <= s_sent * (1 + 1e-6)) and np.all(s_sent < s * 2 ** (1 / 16))
    s = s_sent
  s = np.repeat(s, block)
  delta = 2 * s / (2 ** bits - 1)
  y = (x + s) / delta
  f = y - np.floor(y)
  var = f * (1 - f) * delta ** 2
  assert np.all(var <= delta ** 2 / 4 + 1e-12)
  levels = -s + delta * np.round((draws + s) / delta)
  np.testing.assert_allclose(draws, levels, atol=1e-5 * s.max())  # every draw sits on a level
  # Unbiased: the summed error of the means within 3 of its standard errors, and each of the 64
  # coordinates within 4 (3 would fail one coordinate in 64 about one time in six).
  error = draws.mean(0) - x
  assert abs(error.sum()) <= 3 * np.sqrt(var.sum() / n)
  assert np.all(np.abs(error) <= 4 * np.sqrt(var / n) + 1e-6)
  measured = draws.var(0)
  assert np.all(measured <= delta ** 2 / 4 * 1.1 + 1e-9)
  np.testing.assert_allclose(measured.sum(), var.sum(), rtol=0.05)


@pytest.mark.parametrize("bits,scale_bits", [(2, 32), (4, 8)])
def test_subtractive_dither_leaves_an_error_uniform_on_half_a_step(bits, scale_bits):
  """The receivers remove the dither they draw from the sender's seed: the error is within
  Delta / 2 of x, averages to 0, and has variance Delta^2 / 12 for every x, on the same levels
  as stochastic rounding sends."""
  x = (np.random.default_rng(bits).normal(size=64) * np.repeat([1.0, 0.3, 0.05, 2.0], 16)
       ).astype(np.float32)
  subtractive = compression.Quantize(bits, 16, scale_bits, "subtractive")
  stochastic = compression.Quantize(bits, 16, scale_bits)
  seeds = tf.constant([[3, 8]], tf.int64)
  sent = [c.compress(tf.constant(x[None]), seeds) for c in (subtractive, stochastic)]
  np.testing.assert_array_equal(compression.to_wire(subtractive, sent[0]).numpy(),
                                compression.to_wire(stochastic, sent[1]).numpy())
  n = 4000
  error = _draws(subtractive, x, n) - x
  delta = np.repeat(2 * subtractive.sent_scale(sent[0]).numpy()[0] / (2 ** bits - 1), 16)
  assert np.all(np.abs(error) <= delta / 2 * (1 + 1e-5) + 1e-7)
  var = delta.astype(np.float64) ** 2 / 12
  assert abs(error.mean(0).sum()) <= 3 * np.sqrt(var.sum() / n)
  assert np.all(np.abs(error.mean(0)) <= 4 * np.sqrt(var / n) + 1e-6)
  np.testing.assert_allclose(error.var(0), var, rtol=0.15)
  np.testing.assert_allclose(error.var(0).sum(), var.sum(), rtol=0.05)
  # and half the noise of stochastic rounding on these x (f spread over [0, 1))
  assert error.var(0).sum() < 0.7 * ((_draws(stochastic, x, n) - x) ** 2).mean(0).sum()


def test_quantizer_draws_depend_on_the_seed_only():
  x = np.random.default_rng(0).normal(size=(3, 100)).astype(np.float32)
  q = compression.Quantize(2, 32)
  seeds = tf.constant([[1, 5], [2, 5], [3, 5]], tf.int64)
  together = q.roundtrip(tf.constant(x), seeds).numpy()
  alone = q.roundtrip(tf.constant(x[1:2]), seeds[1:2]).numpy()
  np.testing.assert_array_equal(together[1:2], alone)
  assert not np.array_equal(together, q.roundtrip(tf.constant(x), seeds + [0, 1]).numpy())


def test_topk_keeps_exactly_the_largest_fraction():
  x = np.random.default_rng(1).permutation(np.arange(1, 201, dtype=np.float32)) * np.where(
      np.arange(200) % 2, 1, -1)
  out = compression.TopK(0.1).roundtrip(tf.constant(x[None]), None).numpy()[0]
  kept = np.flatnonzero(out)
  assert len(kept) == 20
  np.testing.assert_array_equal(np.sort(np.abs(x[kept])), np.arange(181, 201))
  np.testing.assert_array_equal(out[kept], x[kept])
  assert compression.TopK(1.0).roundtrip(tf.constant(x[None]), None).numpy()[0].tolist() == \
      x.tolist()


def test_randk_is_unbiased():
  x = np.random.default_rng(2).normal(size=50).astype(np.float32)
  n = 4000
  draws = _draws(compression.RandK(0.2), x, n)
  assert np.all(np.count_nonzero(draws, axis=1) == 10)
  # kept with probability p = k / P and scaled by 1 / p: Var = x^2 (1 - p) / p
  var = x.astype(np.float64) ** 2 * 4
  error = draws.mean(0) - x
  assert abs(error.sum()) <= 3 * np.sqrt(var.sum() / n)
  assert np.all(np.abs(error) <= 4 * np.sqrt(var / n) + 1e-6)


def test_bytes_per_row():
  P = 10_000
  assert compression.Identity().row_bytes(P) == 4 * P
  assert compression.Quantize(4, 256).row_bytes(P) == P // 2 + 4 * 40
  assert compression.Quantize(4, 256, 8).row_bytes(P) == P // 2 + 4 + 40  # a byte per block
  assert compression.Quantize(1, 0).row_bytes(P) == 4 * 313 + 4     # 32 levels a word
  assert compression.Quantize(3, 0).row_bytes(P) == 4 * (625 + 313) + 4  # 2 + 1 bits
  assert compression.TopK(0.01).row_bytes(P) == 8 * 100
  assert compression.RandK(0.01).row_bytes(P) == 4 * 100


@pytest.mark.parametrize("field,value,match", [
    ("compression.kind", "zip", "compression.kind='zip' is not one of"),
    ("compression.bits", 12, "compression.bits=12 is not one of"),
    ("compression.scale_bits", 16, "compression.scale_bits=16 is not one of"),
    ("compression.dither", "none", "compression.dither='none' is not one of"),
    ("compression.combine", "cd", "compression.combine='cd' is not one of"),
    ("compression.fraction", 0.0, r"compression.fraction=0.0 must be in \(0, 1\]"),
    ("compression.gamma", 1.5, r"compression.gamma=1.5 must be in \(0, 1\]"),
    ("compression.statistics", "int8", "compression.statistics='int8' is not one of"),
    ("train.mode", "noncooperative", "exchanges nothing to compress"),
])
def test_config_check_names_the_bad_field(field, value, match):
  c = tiny_config("", **{"compression.kind": "quantize", field: value})
  with pytest.raises(ConfigError, match=match):
    config_lib.validate(c)


def test_old_config_without_compression_loads_as_none():
  c = tiny_config("")
  del c["compression"]
  assert config_lib.upgrade(c).compression.kind == "none"


# ------------------------------------------------------------------ the step, end to end

def _weights(r):
  return [v.numpy() for m in r.step.generators + r.step.discriminators for v in m.weights]


def _train(idx_dir, workdir, **overrides):
  r = run_lib.Run(tiny_config(idx_dir, **overrides), str(workdir))
  r.train()
  return r


@pytest.mark.e2e
def test_none_is_todays_diffusion_bit_for_bit(tmp_path, idx_dir):
  """kind = none ignores every other compression field and adds no state: the plain combine."""
  today = _train(idx_dir, tmp_path / "a")
  none = _train(idx_dir, tmp_path / "b", **{"compression.bits": 2, "compression.zeta": 0.5,
                                            "compression.gamma": 0.5})
  assert none.step.actc is None and "compression" not in none.step.trackables()
  assert "payload_per_agent" not in none.step.exchange.traffic
  for a, b in zip(_weights(today), _weights(none)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.e2e
@pytest.mark.parametrize("lossless", [{"compression.kind": "identity"},
                                      {"compression.kind": "topk", "compression.fraction": 1.0},
                                      {"compression.kind": "identity",
                                       "compression.combine": "choco"}])
def test_actc_with_a_lossless_compressor_is_atc(tmp_path, idx_dir, lossless):
  atc = _train(idx_dir, tmp_path / "atc")
  actc = _train(idx_dir, tmp_path / "actc", **lossless)
  assert actc.step.actc is not None
  for a, b in zip(_weights(atc), _weights(actc)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # q_k = psi_k after every round: q holds the last adapted weights, not zeros
  assert np.abs(actc.step.actc.q[0]["g"][0].numpy()).max() > 0


@pytest.mark.e2e
def test_lossy_actc_trains_away_from_atc(tmp_path, idx_dir):
  atc = _train(idx_dir, tmp_path / "atc")
  actc = _train(idx_dir, tmp_path / "q2", **{"compression.kind": "quantize",
                                             "compression.bits": 2, "compression.gamma": 0.5})
  w = _weights(actc)
  assert all(np.all(np.isfinite(x)) for x in w)
  assert not np.allclose(w[0], _weights(atc)[0])


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["quantize", "randk"])
def test_resume_with_compression_is_bit_identical(tmp_path, idx_dir, kind):
  fields = {"compression.kind": kind, "compression.bits": 4, "compression.fraction": 0.25}
  straight = _train(idx_dir, tmp_path / "a", **{"train.iterations": 4, **fields})
  _train(idx_dir, tmp_path / "b", **{"train.iterations": 2, **fields})
  resumed = run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 4, **fields}),
                        str(tmp_path / "b"))
  assert int(resumed.checkpoints.iteration.numpy()) == 2
  assert int(resumed.step.actc.rounds[1].numpy()) == 2 * (2 + 1)  # restored: 2 x (n_d + n_g)
  resumed.train()
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_array_equal(a, b)
  for net in ("d", "g"):
    for k in (0, 1):
      np.testing.assert_array_equal(straight.step.actc.q[0][net][k].numpy(),
                                    resumed.step.actc.q[0][net][k].numpy())


@pytest.mark.e2e
def test_traffic_counts_the_compressed_payload(tmp_path, idx_dir):
  r = _train(idx_dir, tmp_path / "q4", **{"train.iterations": 1, "compression.kind": "quantize",
                                          "compression.bits": 4, "compression.block": 256})
  step = r.step
  expected = 0
  for net, rounds in (("d", 2), ("g", 1)):
    P, bn = step.sizes[net], step.bn_sizes[net]
    expected += rounds * (4 * -(-P // 8) + 4 * -(-P // 256) + 4 * bn)  # 8 levels a word
  assert step.exchange.traffic["payload_per_agent"] == expected
  weights = 2 * step.sizes["d"] + step.sizes["g"]  # numbers compressed per iteration
  statistics = 4 * (2 * step.bn_sizes["d"] + step.bn_sizes["g"])  # sent as float32
  # 4 bits: half a byte per weight, plus one float32 scale per 256 weights
  assert weights / 2 < expected - statistics < weights / 2 * (1 + 1 / 32) + 4 * 3 * 2


@pytest.mark.e2e
def test_local_statistics_are_neither_sent_nor_mixed(tmp_path, idx_dir):
  """statistics = local: the BatchNorm statistics stay each agent's own and leave the payload;
  the weights train exactly as with them combined (training-mode BatchNorm uses the batch's)."""
  fields = {"train.iterations": 2, "compression.kind": "identity"}
  mixed = _train(idx_dir, tmp_path / "mixed", **fields)
  local = _train(idx_dir, tmp_path / "local", **{**fields, "compression.statistics": "local"})
  assert mixed.step.bn_sizes["g"] > 0
  assert (mixed.step.exchange.traffic["payload_per_agent"]
          - local.step.exchange.traffic["payload_per_agent"]
          == 4 * (2 * mixed.step.bn_sizes["d"] + mixed.step.bn_sizes["g"]))  # n_d = 2, n_g = 1
  for a, b in zip(mixed.step.generators + mixed.step.discriminators,
                  local.step.generators + local.step.discriminators):
    for v, u in zip(a.trainable_variables, b.trainable_variables):
      np.testing.assert_array_equal(v.numpy(), u.numpy())
  stats = lambda r: np.stack([np.concatenate([v.numpy().ravel()
                                              for v in g.non_trainable_variables])
                              for g in r.step.generators])
  # combined, the agents' statistics are pulled together; kept, they stay apart
  spread = lambda S: float(np.mean((S - S.mean(0)) ** 2))
  assert spread(stats(local)) > 1.5 * spread(stats(mixed))


@pytest.mark.e2e
def test_lossless_actc_is_atc_with_offline_agents_and_failed_links(tmp_path, idx_dir):
  """An offline agent sends nothing (its q stays) and keeps its weights, as in ATC."""
  faults = {"num_agents": 3, "data.classes": [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]],
            "topology.agent_dropout": 0.4, "topology.link_failure": 0.3}
  schedule = schedule_lib.build(tiny_config(idx_dir, **faults), 3)
  assert any((schedule.active(i) == 0).any() for i in range(3))  # someone is offline
  atc = _train(idx_dir, tmp_path / "atc", **faults)
  actc = _train(idx_dir, tmp_path / "actc", **faults, **{"compression.kind": "identity"})
  for a, b in zip(_weights(atc), _weights(actc)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_receiver_rebuilds_the_increment_from_the_payload_and_the_seeds():
  """What is sent is the payload alone (rand-k: its values; the indices follow from the seed)."""
  x = tf.constant(np.random.default_rng(3).normal(size=(2, 300)).astype(np.float32))
  seeds = tf.constant([[11, 4], [12, 4]], tf.int64)
  for c in (compression.Quantize(3, 64), compression.TopK(0.05), compression.RandK(0.05)):
    payload = c.compress(x, seeds)
    np.testing.assert_array_equal(c.decompress(payload, seeds).numpy(),
                                  c.roundtrip(x, seeds).numpy())
  assert set(compression.RandK(0.05).compress(x, seeds)) == {"value", "P"}


@pytest.mark.parametrize("bits,words", [(1, 11), (2, 21), (3, 21 + 11), (4, 42), (5, 42 + 11),
                                        (7, 42 + 21 + 11), (8, 84), (16, 167)])
def test_the_wire_packs_b_bit_levels_and_unpacks_them_exactly(bits, words):
  x = tf.constant(np.random.default_rng(bits).normal(size=(2, 333)).astype(np.float32))
  seeds = tf.constant([[1, 2], [3, 4]], tf.int64)
  q = compression.Quantize(bits, 64)
  payload = q.compress(x, seeds)
  wire = compression.to_wire(q, payload)
  # one int32 row per agent: a float32 scale per block of 64, then the b-bit levels in words
  # (32 // b to a word when b divides 32; 3 bits as a 2-bit and a 1-bit field: 21 + 11 words)
  assert wire.dtype == tf.int32 and wire.shape == (2, 6 + words)
  assert q.row_bytes(333) == 4 * wire.shape[1]
  assert payload["levels"].numpy().max() == 2 ** bits - 1  # the top bit is used
  back = compression.from_wire(q, wire, 333)
  np.testing.assert_array_equal(q.decompress(back, seeds).numpy(),
                                q.decompress(payload, seeds).numpy())


@pytest.mark.e2e
@pytest.mark.parametrize("flags", [
    ["--config.compression.kind=quantize", "--config.compression.bits=4",
     "--config.compression.block=64", "--config.compression.scale_bits=8",
     "--config.compression.dither=subtractive", "--config.compression.combine=choco"],
    ["--config.compression.kind=randk", "--config.compression.fraction=0.25",
     "--config.topology.link_failure=0.3", "--config.topology.agent_dropout=0.2"]])
def test_mirrored_allgather_of_the_payload_matches_the_local_exchange(tmp_path, idx_dir, flags):
  """Four agents over two in-process replicas, each all-gathering the other's compressed
  payload (packed levels and byte scales, whose dither each receiver removes, combined as
  CHOCO; or rand-k values) and keeping its own copy of q: the same
  weights and q as one replica holding all four."""
  import os  # pylint: disable=g-import-not-at-top
  from test_trainer import TINY_FLAGS, _bin_train  # pylint: disable=g-import-not-at-top
  common = [f"--config.data.source_dir={idx_dir}", "--config.num_agents=4",
            "--config.data.partition=iid", "--config.topology.graph=ring", *TINY_FLAGS, *flags]
  runs = {}
  for name, extra in (("default", []), ("mirrored", ["--config.train.strategy=mirrored",
                                                      "--config.train.replicas=2"])):
    result = _bin_train(str(tmp_path / name), *common, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    runs[name] = tf.train.load_checkpoint(os.path.join(str(tmp_path / name), "checkpoints"))
  names = [n for n in runs["default"].get_variable_to_shape_map()
           if n.startswith(("generators", "discriminators", "compression")) and "OPTIMIZER" not in n]
  assert sum(n.startswith("compression") for n in names) == 4 * 3
  for n in names:
    np.testing.assert_allclose(runs["mirrored"].get_tensor(n), runs["default"].get_tensor(n),
                               atol=1e-5, err_msg=n)
  # each worker's copy of the other worker's agents' q, equal to the owner's
  copies = [n for n in runs["mirrored"].get_variable_to_shape_map() if "_worker_" in n]
  assert len(copies) == 2 * 2 * 2  # 2 workers x the other's 2 agents x (q_d, q_g)
  for n in copies:
    owner = re.sub(r"(q_[dg])_worker_\d", r"\1", n)
    np.testing.assert_array_equal(runs["mirrored"].get_tensor(n), runs["mirrored"].get_tensor(owner))


@pytest.mark.parametrize("compressor", [compression.Identity(), compression.TopK(0.05),
                                        compression.RandK(0.05), compression.Quantize(4, 0),
                                        compression.Quantize(4, 16, 8, "subtractive")])
def test_every_payload_crosses_the_wire_as_one_int32_row_per_agent(compressor):
  """to_wire gives the one block an exchange moves; from_wire gives back what decompresses to
  the same increment, and row_bytes is its size (rand-k: values only, top-k: index and value)."""
  x = tf.constant(np.random.default_rng(4).normal(size=(3, 300)).astype(np.float32))
  seeds = tf.constant([[1, 9], [2, 9], [3, 9]], tf.int64)
  payload = compressor.compress(x, seeds)
  wire = compression.to_wire(compressor, payload)
  assert wire.dtype == tf.int32 and wire.shape[0] == 3
  assert compressor.row_bytes(300) == 4 * wire.shape[1]
  np.testing.assert_array_equal(
      compressor.decompress(compression.from_wire(compressor, wire, 300), seeds).numpy(),
      compressor.decompress(payload, seeds).numpy())


def test_byte_scales_send_zero_blocks_as_zero_and_cover_blocks_below_their_range():
  """scale_bits = 8: an all-zero block decodes to exactly 0; a block 2^-20 below the row's
  largest (under the codes' 2^(-254/16)) is sent with the smallest code's scale, which still
  covers it, so its draws stay on levels within [-s', s'] and average to it."""
  x = np.zeros([1, 48], np.float32)
  x[0, :16] = np.linspace(-1, 1, 16)
  x[0, 32:] = np.linspace(-1, 1, 16) * 2.0 ** -20
  q = compression.Quantize(4, 16, 8)
  payload = q.compress(tf.constant(x), tf.constant([[5, 1]], tf.int64))
  assert payload["scale_code"].numpy().tolist() == [[0, 255, 254]]
  n = 2000
  draws = _draws(q, x[0], n)
  assert np.all(draws[:, 16:32] == 0)
  s_low = 2.0 ** (-254 / 16)
  assert np.all(np.abs(draws[:, 32:]) <= s_low * (1 + 1e-6))
  error = draws[:, 32:].mean(0) - x[0, 32:]
  assert np.all(np.abs(error) <= 4 * (2 * s_low / 15) / 2 / np.sqrt(n))


def test_the_noise_tool_predicts_the_variance_of_the_draws():
  """tools/quantizer_noise.py compares settings by E||Q(d) - d||^2 from the sent scales without
  drawing: it must match what the draws give."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from conftest import ROOT  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "quantizer_noise", os.path.join(ROOT, "tools", "quantizer_noise.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  d = (np.random.default_rng(6).standard_t(3, size=200) * 1e-3).astype(np.float32)
  for q in (compression.Quantize(4, 32, 8), compression.Quantize(3, 64),
            compression.Quantize(4, 32, 8, "subtractive")):
    measured = ((_draws(q, d, 3000) - d) ** 2).sum(1).mean()
    np.testing.assert_allclose(tool.expected_variance(q, d), measured, rtol=0.05)


@pytest.mark.parametrize("combine", ["choco", "actc"])
def test_choco_keeps_the_network_average_of_the_adapted_weights(combine):
  """combine = choco: w_k = psi_k + gamma (sum_l a_lk q_l - q_k). With A doubly stochastic the
  mixing terms cancel in the sum over agents, so after lossy rounds the agents' mean is the mean
  of their adapted psi; actc's w_k = sum_l a_lk q_l moves it by the quantization noise."""
  K, P = 4, 500
  A = np.array([[.5, .25, 0, .25], [.25, .5, .25, 0], [0, .25, .5, .25], [.25, 0, .25, .5]],
               np.float32)
  actc = compression.ACTC(compression.Quantize(2, 0), 1.0, 1.0, seed=0, own=range(K),
                          holders={0: (None, range(K))}, sizes={"g": P}, owner=lambda l: 0,
                          statistics="local", combine=combine)
  rng = np.random.default_rng(0)
  for _ in range(3):
    psi = tf.constant(rng.normal(size=(K, P)).astype(np.float32))
    w = actc.step("g", psi, list(range(K)), 0, send=lambda payload: payload,
                  combine=lambda q: tf.constant(A.T) @ q).numpy()
    error = np.abs(w.mean(0) - psi.numpy().mean(0)).max()
    if combine == "choco":
      assert error < 1e-5
    else:
      assert error > 1e-2
