"""How close to the machine: the training step's FLOPs per iteration against a peak measured here.

  python -m bench.roofline                          # widths 0.25 and 1.0, K=5: ~2 minutes
  python -m bench.roofline --widths=0.25 --iters=3  # a quick look
  python -m bench.roofline --out=docs/perf/roofline.json

Milliseconds alone do not say whether the step is slow or the machine is; GFLOP/s against the same
machine's matmul peak, measured in the same run (so under the same load), does. The step is the
"step" variant of bench/step.py: DiffusionStep, paper5 graph with Metropolis weights, SGD.

FLOPs per iteration are counted from the models twice:
  analytic  from the Keras layers' shapes: Conv2D / Conv2DTranspose / Dense multiply-adds x 2,
            summed over what one iteration of Algorithm 1 needs (below); elementwise ops
            (BatchNorm, activations, biases, losses, the SGD update) are not counted.
  profiler  TensorFlow's registered FLOP statistics (tfprof) over the step traced with its rounds
            unrolled (a graph loop's body would be counted once): 'traced' is tfprof's total over
            every node; 'live' sums the same statistics over the nodes a tf.function runs, those
            the outputs and side effects depend on. The tape builds gradients nobody asked for
            (G's backward in the D rounds, D's weight gradients in the G round, the input gradient
            of D's first layer); the runtime prunes them, so 'live' is what the step does.
Per agent and round, a backward pass costs one forward per gradient needed: the weight gradient
of every layer whose weights are adapted, the input gradient of every layer with something taped
below it. D round: G forward on B noise, D forward + weight gradients on B real + B fake, input
gradients above D's first layer (no G backward). G round: G forward + backward (no input gradient
for the Dense on z), D forward + input gradients only. Combine: 2 K P FLOPs per agent and round.
"""

import collections
import json
import os
import platform
import time

from absl import app
from absl import flags
import numpy as np

import bench  # the package: width_label

import tfdiffgan  # pylint: disable=unused-import (before TensorFlow: oneDNN on, C++ logs quiet)


def define_flags():
  """Defined when run, not on import: the test suite imports several bench modules into one
  process, and absl refuses a flag name defined twice."""
  flags.DEFINE_list("widths", ["0.25", "1.0"], "DCGAN width multipliers.")
  flags.DEFINE_integer("iters", 10, "Timed iterations of the step (after 2 warm-up calls).")
  flags.DEFINE_float("d_width", 0.0, "Discriminator width multiplier (model.d_width; 0: the "
                     "same as the generator's).")
  flags.DEFINE_integer("K", 5, "Agents (paper5 graph at K=5, a ring otherwise).")
  flags.DEFINE_integer("pack", 1, "Images the discriminator scores at once (model.pack).")
  flags.DEFINE_integer("batch", 64, "Batch per agent and round.")
  flags.DEFINE_integer("n_d", 5, "Discriminator rounds per iteration.")
  flags.DEFINE_integer("n_g", 1, "Generator rounds per iteration.")
  flags.DEFINE_integer("matmul_n", 2048, "Size of the square float32 matmul that measures the peak.")
  flags.DEFINE_bool("profiler", True, "Also trace the unrolled step and count FLOPs with tfprof.")
  flags.DEFINE_string("out", "bench/roofline.json", "JSON output ('' for none).")


FLAGS = flags.FLAGS

LATENT = 100
MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Conv2D",
              "Conv2DBackpropInput", "Conv2DBackpropFilter")
# Op types that move or describe data but do no arithmetic: left out of the printed list of
# types without FLOP statistics (the JSON has them all).
NO_ARITHMETIC = {"Const", "ReadVariableOp", "AssignVariableOp", "Reshape", "StridedSlice",
                 "Placeholder", "Squeeze", "Pack", "Transpose", "Tile", "StopGradient", "ShapeN",
                 "Shape", "Bitcast", "Identity", "NoOp", "Cast", "RngReadAndSkip", "Prod",
                 "ConcatV2", "GatherV2", "ExpandDims", "Fill", "ZerosLike", "OnesLike"}


def layer_flops(model):
  """[(name, forward FLOPs per sample)] of the model's Conv2D / Conv2DTranspose / Dense layers:
  2 x kernel size x the pixels the kernel is applied at (output pixels for a convolution, input
  pixels for a transposed one: it scatters each input pixel through the whole kernel)."""
  import keras  # pylint: disable=g-import-not-at-top
  out = []
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2DTranspose):
      pixels = np.prod(layer.input.shape[1:3])
    elif isinstance(layer, keras.layers.Conv2D):
      pixels = np.prod(layer.output.shape[1:3])
    elif isinstance(layer, keras.layers.Dense):
      pixels = np.prod(layer.input.shape[1:-1])
    else:
      continue
    out.append((layer.name, int(2 * pixels * np.prod(layer.kernel.shape))))
  return out


def pass_flops(fwd, batch, weights, inputs):
  """Forward + backward FLOPs of ``batch`` samples through layers of forward FLOPs ``fwd``: one
  forward's worth per gradient asked for. weights: every layer's weight gradient; inputs: 'none',
  'above_first' (input gradients above the first layer) or 'all' (the first's too: something
  taped below it, as G under D in the generator round)."""
  f = np.asarray(fwd, np.int64)
  grad = {"none": 0, "above_first": f[1:].sum(), "all": f.sum()}[inputs] + weights * f.sum()
  return int(batch * (f.sum() + grad))


def iteration_flops(g_fwd, d_fwd, p_g, p_d, K, batch, n_d, n_g, pack=1):
  """Analytic FLOPs of one iteration of Algorithm 1 over K agents, by part. D sees batch / pack
  inputs of ``pack`` images each (model.pack); d_fwd counts per input."""
  parts = {
      "d_rounds": K * n_d * (pass_flops(g_fwd, batch, False, "none")
                             + pass_flops(d_fwd, 2 * batch // pack, True, "above_first")),
      "g_rounds": K * n_g * (pass_flops(g_fwd, batch, True, "above_first")
                             + pass_flops(d_fwd, batch // pack, False, "all")),
      "combine": K * (n_d * 2 * K * p_d + n_g * 2 * K * p_g),
  }
  parts["total"] = sum(parts.values())
  return parts


def live_ops(graph):
  """The ops a tf.function runs: those its outputs and control outputs (side effects) need."""
  todo = [t.op for t in graph.outputs] + list(graph.control_outputs)
  seen = set()
  while todo:
    op = todo.pop()
    if op.name not in seen:
      seen.add(op.name)
      todo.extend([t.op for t in op.inputs] + list(op.control_inputs))
  return seen


def profiler_flops(graph):
  """tfprof's float-op count of a traced graph, and the same statistics over its live ops by op
  type; op types with no registered statistics, and ops whose shapes were too unknown to count."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.framework import ops as tf_ops  # pylint: disable=g-import-not-at-top
  from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top
  builder = tf.compat.v1.profiler.ProfileOptionBuilder
  options = builder(builder.float_operation()).with_empty_output().build()
  live = live_ops(graph)
  by_type, unregistered, unknown_shape = collections.Counter(), collections.Counter(), []
  with deprecation.silence():  # the FLOP statistics call a deprecated v1 shape helper
    traced = tf.compat.v1.profiler.profile(graph, cmd="op", options=options).total_float_ops
    for op in graph.get_operations():
      if op.name not in live:
        continue
      try:
        value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
      except ValueError:
        unknown_shape.append(op.type)
        continue
      if value is None:
        unregistered[op.type] += 1
      else:
        by_type[op.type] += int(value)
  return {"traced": int(traced), "live": int(sum(by_type.values())),
          "live_conv_matmul": int(sum(v for k, v in by_type.items() if k in MATMUL_OPS)),
          "live_by_type": dict(by_type.most_common()),
          "unregistered": dict(unregistered.most_common()),
          "unknown_shape": sorted(set(unknown_shape)), "ops": len(graph.get_operations()),
          "live_ops": len(live)}


def timed(fn, calls, warmup=2):
  """Median and interquartile range (s) of ``calls`` calls of fn after ``warmup`` calls."""
  for _ in range(warmup):
    fn()
  ts = []
  for _ in range(calls):
    t0 = time.perf_counter()
    fn()
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts)), float(np.subtract(*np.percentile(ts, [75, 25])))


def matmul_peak(n, calls=7):
  """GFLOP/s of an n x n float32 matmul in a tf.function: 2 n^3 FLOPs a call."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
  f = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
  t, _ = timed(lambda: f().numpy(), calls)
  return 2 * n ** 3 / t / 1e9


def layer_peak(layer, flops_per_sample, batch, calls=7):
  """GFLOP/s of one layer's forward alone on a batch of its input shape (the step's biggest
  convolution: what the kernels reach on a shape the step really runs)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.random.normal([batch] + list(layer.input.shape[1:]))
  f = tf.function(lambda: tf.reduce_sum(layer(x)))
  t, _ = timed(lambda: f().numpy(), calls)
  return batch * flops_per_sample / t / 1e9


def measure(width, K=5, batch=64, n_d=5, n_g=1, iters=10, matmul_n=2048, profiler=True,
            d_width=0.0, pack=1):
  """One row: the step's FLOPs (analytic and tfprof), its time, and the peaks, at one width
  (the discriminator's is d_width when set; it scores ``pack`` images at once, model.pack)."""
  d_width = d_width or width
  import keras  # pylint: disable=g-import-not-at-top
  from tfdiffgan import data, diffusion, models, optim, topology

  A = topology.metropolis(topology.make_graph("paper5" if K == 5 else "ring", K))
  gens, discs = [], []
  for k in range(K):
    keras.utils.set_random_seed(k)
    gens.append(models.make_generator(LATENT, width))
    discs.append(models.make_discriminator(d_width, pack=pack))
  opts = lambda: [optim.make_optimizer("sgd", 0.05) for _ in range(K)]
  make = lambda loop: diffusion.DiffusionStep(gens, discs, opts(), opts(), A, n_d=n_d, n_g=n_g,
                                              latent_dim=LATENT, loop_rounds=loop)
  size = lambda vs: int(sum(np.prod(v.shape) for v in vs))
  p_g, p_d = size(models.combined_variables(gens[0])), size(models.combined_variables(discs[0]))
  g_fwd, d_fwd = layer_flops(gens[0]), layer_flops(discs[0])
  analytic = iteration_flops([f for _, f in g_fwd], [f for _, f in d_fwd], p_g, p_d, K, batch,
                             n_d, n_g, pack)
  rng = np.random.default_rng(0)
  shards = [rng.integers(0, 256, size=(2 * batch * n_d, 28, 28)).astype(np.uint8) for _ in range(K)]
  real = next(iter(data.network_pipeline(shards, batch, n_d, seed=0)))
  row = {"width": width, "d_width": d_width, "pack": pack, "K": K, "batch": batch, "n_d": n_d,
         "n_g": n_g,
         "params_g": size(gens[0].trainable_variables),
         "params_d": size(discs[0].trainable_variables), "combined_params": [p_g, p_d],
         "layer_flops": {"generator": dict(g_fwd), "discriminator": dict(d_fwd)},
         "analytic": analytic}
  if profiler:  # the unrolled twin shares the models; it is traced, never run
    unrolled = make(False)
    t0 = time.perf_counter()
    graph = unrolled._compiled.get_concrete_function(  # pylint: disable=protected-access
        tuple(real), unrolled.static_matrices, None, 1.0).graph
    row["profiler"] = profiler_flops(graph)
    row["profiler"]["seconds"] = time.perf_counter() - t0
    for key in ("traced", "live", "live_conv_matmul"):
      row["profiler"]["analytic_over_" + key] = analytic["total"] / max(row["profiler"][key], 1)
  step = make(True)
  t, iqr = timed(lambda: np.asarray(step(real)["d_loss"]), iters)
  row.update(ms=1000 * t, iqr_ms=1000 * iqr, gflops=analytic["total"] / t / 1e9,
             matmul_peak_gflops=matmul_peak(matmul_n))
  name, f = max(g_fwd + d_fwd, key=lambda x: x[1])
  layer = next(l for m in (gens[0], discs[0]) for l in m.layers if l.name == name)
  row.update(biggest_layer=name, layer_peak_gflops=layer_peak(layer, f, batch))
  row["pct_of_matmul_peak"] = 100 * row["gflops"] / row["matmul_peak_gflops"]
  row["pct_of_layer_peak"] = 100 * row["gflops"] / row["layer_peak_gflops"]
  return row


def table(rows):
  head = (f"{'width':>9} {'P(G)':>8} {'P(D)':>7} | {'GFLOP/it':>8} {'tfprof':>7} {'a/tfp':>5}"
          f" {'live':>7} {'a/live':>6} | {'ms/it':>7} {'GFLOP/s':>7} | {'matmul':>6} {'%':>5} |"
          f" {'layer':>6} {'%':>5}")
  lines = [head, "-" * len(head)]
  for r in rows:
    p = r.get("profiler", {})
    g = lambda k: p.get(k, float("nan")) / 1e9
    ratio = lambda k: p.get("analytic_over_" + k, float("nan"))
    lines.append(
        f"{bench.width_label(r):>9} {r['params_g']:>8} {r['params_d']:>7} |"
        f" {r['analytic']['total'] / 1e9:8.2f} {g('traced'):7.2f} {ratio('traced'):5.3f}"
        f" {g('live'):7.2f} {ratio('live'):6.3f} |"
        f" {r['ms']:7.1f} {r['gflops']:7.2f} |"
        f" {r['matmul_peak_gflops']:6.1f} {r['pct_of_matmul_peak']:5.1f} |"
        f" {r['layer_peak_gflops']:6.1f} {r['pct_of_layer_peak']:5.1f}")
  return "\n".join(lines)


def main(argv):
  del argv
  rows = []
  for width in FLAGS.widths:
    rows.append(measure(float(width), FLAGS.K, FLAGS.batch, FLAGS.n_d, FLAGS.n_g, FLAGS.iters,
                        FLAGS.matmul_n, FLAGS.profiler, FLAGS.d_width, FLAGS.pack))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
  print(table(rows))
  print("GFLOP/it: analytic (convolutions and matmuls); tfprof: its total over the traced graph,"
        " dead gradients included; live: the same statistics over the ops the step runs")
  for r in rows:
    a, p = r["analytic"], r.get("profiler")
    print(f"w{bench.width_label(r)}: analytic GFLOP/it d_rounds {a['d_rounds'] / 1e9:.3f}, "
          f"g_rounds {a['g_rounds'] / 1e9:.3f}, combine {a['combine'] / 1e9:.4f}; biggest layer "
          f"{r['biggest_layer']}")
    if p:
      print(f"  tfprof live conv+matmul {p['live_conv_matmul'] / 1e9:.3f} GFLOP (analytic / it "
            f"{p['analytic_over_live_conv_matmul']:.3f}); live by type (GFLOP): " + ", ".join(
                f"{k} {v / 1e9:.3f}" for k, v in p["live_by_type"].items() if v >= 1e6))
      print("  live op types doing arithmetic with no FLOP statistics (not counted): " + ", ".join(
          f"{k} x{v}" for k, v in p["unregistered"].items() if k not in NO_ARITHMETIC))
      if p["unknown_shape"]:
        print("  not countable (shapes unknown): " + ", ".join(p["unknown_shape"]))
  if FLAGS.out:
    meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1", "iters": FLAGS.iters,
            "matmul_n": FLAGS.matmul_n}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
