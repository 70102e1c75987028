"""The benchmark runs at tiny sizes, and its naive reference computes what the step computes."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import bench
from bench import naive
from conftest import ROOT
from tfdiffgan import diffusion, models, optim, topology


def _agents(K):
  gens, discs = [], []
  for k in range(K):
    keras.utils.set_random_seed(k)
    gens.append(models.make_generator(8, 0.125))
    discs.append(models.make_discriminator(0.125))
  return gens, discs


def test_naive_reference_and_step_compute_the_same_weights():
  K = 3
  A = topology.metropolis(topology.make_graph("ring", K))
  opts = lambda: [optim.make_optimizer("sgd", 0.05) for _ in range(K)]
  step = diffusion.DiffusionStep(*_agents(K), opts(), opts(), A, n_d=2, n_g=1, latent_dim=8)
  ref = naive.NaiveStep(*_agents(K), opts(), opts(), A, n_d=2, n_g=1, latent_dim=8)
  rng = np.random.default_rng(0)
  real = tuple(tf.constant(rng.uniform(-1, 1, (2, 4, 28, 28, 1)).astype(np.float32))
               for _ in range(K))
  for _ in range(2):
    a, b = step(real), ref(real)
  np.testing.assert_allclose(a["d_loss"].numpy(), b["d_loss"], rtol=1e-4)
  for m1, m2 in zip(step.generators + step.discriminators, ref.generators + ref.discriminators):
    for v1, v2 in zip(m1.weights, m2.weights):
      np.testing.assert_allclose(v1.numpy(), v2.numpy(), atol=1e-5)


@pytest.mark.e2e
def test_bench_runs_at_tiny_size(tmp_path):
  out = tmp_path / "bench.json"
  r = subprocess.run([sys.executable, "-m", "bench.step", "--K=2", "--widths=0.125", "--iters=1",
                      "--batch=4", "--n_d=1", f"--out={out}"], capture_output=True, text=True,
                     cwd=ROOT, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "comb %" in r.stdout and "x naive" in r.stdout
  row = json.load(open(out))["rows"][0]
  for kind in ("step", "floor", "naive", "centralized"):
    assert row[kind]["median_ms"] > 0 and row[kind]["trace_s"] > 0
  assert row["speedup_vs_naive"] > 0 and row["peak_rss_mb"] > 0


def test_grouped_conv_probe_runs():
  from bench import grouped_conv
  rows = grouped_conv.measure(K=2, batch=2, calls=1)
  assert len(rows) == len(grouped_conv.LAYERS)
  for r in rows:
    assert r["separate_fwd_ms"] > 0 and r["separate_grad_ms"] > 0
    assert isinstance(r["grouped_grad_ms"], (float, str))


def test_combine_variants_agree():
  """bench.combine's three combiners compute the same mixed weights (eq. 10b)."""
  from bench import combine
  K = 3
  A = topology.metropolis(topology.make_graph("ring", K))
  results = {}
  for key in ("per_variable", "flat", "sparse"):
    nets = _agents(K)[1]
    variables = [models.combined_variables(m) for m in nets]
    before = np.stack([np.concatenate([np.ravel(v.numpy()) for v in vs]) for vs in variables])
    combine.combiners(A, variables)[key]()
    after = np.stack([np.concatenate([np.ravel(v.numpy()) for v in vs]) for vs in variables])
    np.testing.assert_allclose(after, A.T @ before, rtol=1e-5, atol=1e-6)
    results[key] = after
  np.testing.assert_allclose(results["flat"], results["sparse"], rtol=1e-5, atol=1e-6)


def test_targets_judge_rows():
  """The sweep's verdicts follow the rows: a straight line in K passes, a bent one fails."""
  from bench import step

  def row(K, ms, floor, naive, trace):
    return {"K": K, "width": 0.25, "step": {"median_ms": ms, "trace_s": trace},
            "combine_overhead_pct": 100 * (ms / floor - 1), "speedup_vs_naive": naive / ms}

  straight = [row(K, 100 * K, 100 * K, 160 * K, 2.0 * K) for K in (2, 5, 10, 20)]
  assert all(ok for _, _, ok in step.targets(straight))
  bent = [row(2, 400, 380, 500, 8.0)] + straight[1:]  # K=2 far off the line, 3% overhead
  verdicts = {name.split(": ")[1]: ok for name, _, ok in step.targets(bent)}
  assert not verdicts["ms/iteration linear in K within 10%"]
  assert not verdicts[">= 1.5x the naive reference (every K)"]  # 500/400 = 1.25x at K=2
  assert verdicts["combine overhead <= 2% of the floor at K=5"]
  assert verdicts["trace time not growing faster than K"]  # 4 s/agent at K=2, 2 s/agent after


@pytest.mark.e2e
def test_exchange_bench_counts_what_crosses_the_wire():
  """Two worker processes, neighbors exchange: the exchange's own count equals the formula
  deg L P, and at least that many bytes really crossed loopback."""
  from bench import exchange as bench_exchange  # pylint: disable=g-import-not-at-top
  args = {"width": 0.125, "iters": 1, "n_d": 1, "batch": 4}
  row = bench_exchange.run_setting(2, "ring", 2, "neighbors", args)
  assert row["workers"] == 2 and row["exchange"] == "neighbors" and row["neighbour_workers"] == 1
  assert row["sent"] == row["received"] == row["formula_bytes"] > 0
  if row["loopback_bytes_per_iteration_worker"] is not None:
    assert row["loopback_bytes_per_iteration_worker"] >= row["sent"]
  assert "neighbors" in bench_exchange.table([row])


def test_roofline_counts_flops_by_hand_and_as_tensorflow_does():
  """Layer FLOPs by hand; tfprof's count of a plain matmul is 2 m n k; and on a tiny step the
  analytic count of an iteration equals TensorFlow's own count of the convolutions and matmuls
  the tf.function runs (the gradients the tape builds but nobody uses are in the traced graph)."""
  from bench import roofline
  dense = keras.Sequential([keras.Input((100,)), keras.layers.Dense(10)])
  assert [f for _, f in roofline.layer_flops(dense)] == [2 * 100 * 10]
  stack = keras.Sequential([
      keras.Input((8, 8, 3)),
      keras.layers.Conv2D(4, 3, strides=2, padding="same"),           # 4x4 outputs, 3x3x3 each
      keras.layers.Conv2DTranspose(2, 5, strides=2, padding="same"),  # 4x4 inputs, 5x5x2 each
      keras.layers.Flatten(),
      keras.layers.Dense(10)])                                        # 8*8*2 = 128 inputs
  assert [f for _, f in roofline.layer_flops(stack)] == [
      2 * 4 * 4 * (3 * 3 * 3) * 4, 2 * 4 * 4 * (5 * 5 * 2) * 4, 2 * 128 * 10]
  # forward 30 + weight gradients 30 + input gradient of the second layer 20, for 2 samples
  assert roofline.pass_flops([10, 20], 2, True, "above_first") == 160
  assert roofline.pass_flops([10, 20], 2, False, "all") == 120

  m, n, k = 3, 5, 7
  matmul = tf.function(tf.linalg.matmul).get_concrete_function(
      tf.TensorSpec([m, k]), tf.TensorSpec([k, n]))
  counted = roofline.profiler_flops(matmul.graph)
  assert counted["traced"] == counted["live"] == counted["live_by_type"]["MatMul"] == 2 * m * n * k

  # D at its own width (model.d_width): the two counts still agree
  row = roofline.measure(0.125, K=2, batch=4, n_d=2, n_g=1, iters=1, matmul_n=64, d_width=0.25)
  assert row["params_d"] == models.make_discriminator(0.25).count_params()
  assert bench.width_label(row) == "0.125/0.25"
  prof = row["profiler"]
  assert row["analytic"]["total"] == prof["live_conv_matmul"] > 0
  assert prof["traced"] > prof["live"] > prof["live_conv_matmul"]  # dead gradients; elementwise
  assert not prof["unknown_shape"]
  assert row["ms"] > 0 and row["gflops"] > 0 and row["matmul_peak_gflops"] > 0

  # D scoring pairs (model.pack=2): half the inputs, two channels each; the counts still agree
  row = roofline.measure(0.125, K=2, batch=4, n_d=1, n_g=1, iters=1, matmul_n=64, d_width=0.25,
                         pack=2)
  assert row["analytic"]["total"] == row["profiler"]["live_conv_matmul"] > 0


def test_tuning_table_reads_a_finished_run(tmp_path):
  """bench.tuning's row and table from a run's files: widths of G and D, both FIDs, the smallest
  class share over the agents by each classifier."""
  from bench import tuning
  run = tmp_path / "w.s3"
  run.mkdir()
  agent = lambda fid, main, check: {"fid": fid, "robust_coverage": 10, "weakest_class_share": main,
                                    "check_weakest_class_share": check}
  (run / "metrics.json").write_text(json.dumps({
      "agents": [agent(7.0, 0.07, 0.065), agent(9.0, 0.055, 0.08)],
      "raw": {"agents": [agent(6.0, 0.06, 0.06), agent(8.0, 0.06, 0.06)]}}))
  (run / "run.json").write_text(json.dumps({"train_seconds": 540.0}))
  (run / "config.json").write_text(json.dumps({
      "train": {"n_d": 1, "iterations": 2700, "learning_rate": 0.05, "ema_decay": 0.995,
                "lr_decay": 0.99},
      "data": {"batch_size": 64}, "model": {"width": 0.375, "d_width": 0.5,
                                            "minibatch_std": True}}))
  r = tuning.row(str(tmp_path), "w", 3)
  assert (r["fid"], r["fid_raw"], r["weakest_main"], r["weakest_check"]) == (8.0, 7.0, 0.055, 0.065)
  line = tuning.table([r]).splitlines()[-1]
  assert "| 0.375/0.5 +std |" in line and "| 9.0 min |" in line and "5.5% / 6.5%" in line


def test_netns_bench_plan_and_clusters():
  """bench.netns's window plan and the simulated hosts' clusters, without making namespaces:
  worker i on host i at the host's own address, or every worker on one host's loopback."""
  from bench import netns as bench_netns
  from tfdiffgan import netns
  assert bench_netns.phases(("unlimited", "100mbit"), 2, 2) == [
      None, None, "unlimited", "100mbit", "unlimited", "100mbit", None]
  hosts = netns.Hosts(2, rate="100mbit", subnet=9)
  assert [json.loads(c)["cluster"]["worker"] for c in hosts.tf_configs()] == [
      ["10.77.9.1:23456", "10.77.9.2:23456"]] * 2
  assert hosts.prefix(1) == ["ip", "netns", "exec", hosts.names[1]]
  assert json.loads(netns.Hosts(1).tf_configs(workers=3)[2]) == {
      "cluster": {"worker": ["127.0.0.1:23456", "127.0.0.1:23457", "127.0.0.1:23458"]},
      "task": {"type": "worker", "index": 2}}
  assert netns.rate_bits("1gbit") == 1e9 and netns.burst_bytes("100mbit") == 128 * 1024
  with pytest.raises(netns.NetnsError):
    netns.Hosts(2, rate="fast")
