"""Benchmark of the training step: ms/iteration against its own floor and a naive reference.

  python -m bench.step                      # K in {2, 5, 10, 20}, widths {0.25, 1.0}: ~30 min
  python -m bench.step --onednn=false --K=5 # the same step on TensorFlow's default kernels
  python -m bench.step --K=5 --widths=0.25 --iters=10 --out=bench/results.json

Variants, timed interleaved in one process per (K, width) so they share the machine's state:
  step        the project's DiffusionStep (one tf.function: adapt + tensordot combine), paper5/ring A
  unrolled    the step with its rounds unrolled in Python instead of a graph loop (optional)
  floor       the same step with A = I (adapt only: the combine is skipped)
  naive       per-agent tf.functions called from a Python loop, combine in numpy (bench/naive.py)
  centralized one GAN, batch K x B (what the centralized mode runs)
Also the input pipeline alone, trace time (first call), cores in use and the process's peak RSS.

Ratios are paired: each rotation times every variant once, the ratio is taken within the rotation
and the median over rotations reported, so a slow minute of the machine (spreads between calls
are 10-25% here) falls on both sides of a ratio instead of on one. After the sweep the targets of
the issue are checked against the rows (overhead, speed-up over naive, linearity and trace in K).
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

import bench  # the package: width_label

flags.DEFINE_list("K", ["2", "5", "10", "20"], "Numbers of agents.")
flags.DEFINE_list("widths", ["0.25", "1.0"], "DCGAN width multipliers.")
flags.DEFINE_integer("iters", 20, "Timed iterations per variant (after 2 warm-up calls).")
flags.DEFINE_integer("iters_wide", 5, "Timed iterations per variant at widths >= 0.5 (seconds per "
                     "call there: fewer calls keep a full sweep near half an hour).")
flags.DEFINE_float("d_width", 0.0, "Discriminator width multiplier (model.d_width; 0: the same as "
                   "the generator's).")
flags.DEFINE_integer("batch", 64, "Batch per agent and round.")
flags.DEFINE_integer("pack", 1, "Images D scores at once (model.pack).")
flags.DEFINE_integer("n_d", 5, "Discriminator rounds per iteration.")
flags.DEFINE_list("variants", ["step", "floor", "naive", "centralized"], "Variants to time.")
flags.DEFINE_string("out", "bench/results.json", "JSON output.")
flags.DEFINE_bool("onednn", True, "TF_ENABLE_ONEDNN_OPTS for the timed processes (tfdiffgan "
                  "turns it on; false measures TensorFlow's default on CPUs it does not enable).")
flags.DEFINE_bool("child", False, "Internal: run one (K, width) cell and print its JSON.")
FLAGS = flags.FLAGS


def _cell(K, width, iters, batch, n_d, variants, d_width=0.0, pack=1):
  """Times every variant for one (K, width) in this process (D at d_width when set, scoring
  ``pack`` images at once as model.pack)."""
  d_width = d_width or width
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras
  from bench import naive
  from tfdiffgan import data, diffusion, models, optim, topology

  graph = "paper5" if K == 5 else "ring"
  A = topology.metropolis(topology.make_graph(graph, K))
  rng = np.random.default_rng(0)
  shards = [rng.integers(0, 256, size=(2 * batch * n_d, 28, 28)).astype(np.uint8) for _ in range(K)]

  def build(kind):
    n = 1 if kind == "centralized" else K
    gens, discs = [], []
    for k in range(n):
      keras.utils.set_random_seed(k)
      gens.append(models.make_generator(100, width))
      discs.append(models.make_discriminator(d_width, pack=pack))
    opts = lambda: [optim.make_optimizer("sgd", 0.05) for _ in range(n)]
    if kind == "naive":
      return naive.NaiveStep(gens, discs, opts(), opts(), A, n_d=n_d, n_g=1, latent_dim=100)
    matrix = {"step": A, "unrolled": A, "floor": np.eye(K), "centralized": np.ones((1, 1))}[kind]
    return diffusion.DiffusionStep(gens, discs, opts(), opts(), matrix, n_d=n_d, n_g=1,
                                   latent_dim=100, loop_rounds=kind != "unrolled")

  inputs = {
      "network": [next(iter(data.network_pipeline(shards, batch, n_d, seed=0)))],
      "centralized": [next(iter(data.network_pipeline([np.concatenate(shards)], batch * K, n_d,
                                                      seed=0)))],
  }
  steps, trace = {}, {}
  for kind in variants:
    steps[kind] = build(kind)
    x = inputs["centralized" if kind == "centralized" else "network"][0]
    t0 = time.perf_counter()
    out = steps[kind](x)
    np.asarray(out["d_loss"])
    trace[kind] = time.perf_counter() - t0
    steps[kind](x)  # second warm-up
  times, cpu = {k: [] for k in variants}, {k: [] for k in variants}
  for i in range(iters):  # interleaved, the order rotated so no variant always follows another
    for kind in variants[i % len(variants):] + variants[:i % len(variants)]:
      x = inputs["centralized" if kind == "centralized" else "network"][0]
      t0, c0 = time.perf_counter(), time.process_time()
      out = steps[kind](x)
      np.asarray(out["d_loss"])
      times[kind].append(time.perf_counter() - t0)
      cpu[kind].append(time.process_time() - c0)
  it = iter(data.network_pipeline(shards, batch, n_d, seed=1))
  next(it)
  t0 = time.perf_counter()
  for _ in range(20):
    next(it)
  pipeline_ms = (time.perf_counter() - t0) / 20 * 1000
  row = {"K": K, "width": width, "d_width": d_width, "pack": pack, "pipeline_ms": pipeline_ms,
         "iters": iters,
         "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1",
         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  images = K * batch * (n_d + 1)  # real + generated images an iteration processes per D/G round
  for kind in variants:
    ms = np.array(times[kind]) * 1000
    row[kind] = {"median_ms": float(np.median(ms)), "iqr_ms": float(np.subtract(*np.percentile(ms, [75, 25]))),
                 "trace_s": trace[kind], "agent_images_per_s": images / (np.median(ms) / 1000),
                 "cores": float(np.sum(cpu[kind]) / np.sum(times[kind])),
                 "ms": [float(t) for t in ms]}  # raw, in rotation order: ratios can be re-derived
  paired = lambda a, b: np.array(times[a]) / np.array(times[b])  # same rotation, both sides
  if "step" in row and "floor" in row:
    r = 100 * (paired("step", "floor") - 1)
    row["combine_overhead_pct"], row["combine_overhead_ci95"] = float(np.median(r)), median_ci(r)
  if "step" in row and "naive" in row:
    r = paired("naive", "step")
    row["speedup_vs_naive"], row["speedup_vs_naive_ci95"] = float(np.median(r)), median_ci(r)
  return row


def median_ci(x, level=0.95, resamples=2000):
  """Bootstrap interval of the median: how far a verdict of one run can be trusted."""
  x = np.asarray(x, float)
  rng = np.random.default_rng(0)
  meds = np.median(rng.choice(x, size=(resamples, len(x))), axis=1)
  return [float(v) for v in np.percentile(meds, [50 * (1 - level), 50 * (1 + level)])]


def _table(rows):
  head = (f"{'K':>3} {'width':>8} | {'step ms':>8} {'iqr':>5} {'floor':>8} {'naive':>8} {'central':>8}"
          f" | {'comb %':>6} {'x naive':>7} | {'trace s':>7} {'img/s':>7} {'cores':>5} {'pipe ms':>7}"
          f" {'RSS MB':>6}")
  lines = [head, "-" * len(head)]
  for r in rows:
    g = lambda k, f="median_ms": r.get(k, {}).get(f, float("nan"))
    lines.append(
        f"{r['K']:>3} {bench.width_label(r):>8} | {g('step'):8.1f} {g('step', 'iqr_ms'):5.1f} {g('floor'):8.1f}"
        f" {g('naive'):8.1f} {g('centralized'):8.1f} | {r.get('combine_overhead_pct', float('nan')):6.1f}"
        f" {r.get('speedup_vs_naive', float('nan')):7.2f} | {g('step', 'trace_s'):7.1f}"
        f" {g('step', 'agent_images_per_s'):7.0f} {g('step', 'cores'):5.2f} {r['pipeline_ms']:7.2f}"
        f" {r['peak_rss_mb']:6.0f}")
  return "\n".join(lines)


def targets(rows):
  """The issue's targets checked against the rows: [(target, measured, met)]. Linearity is the
  largest deviation from a least-squares line of ms in K; trace time per agent may not rise by
  more than 10% from the smallest K to the largest."""
  out = []
  for width in sorted({r["width"] for r in rows}):
    rs = sorted((r for r in rows if r["width"] == width and "step" in r), key=lambda r: r["K"])
    k5 = [r for r in rs if r["K"] == 5 and "combine_overhead_pct" in r]
    if k5:
      v, ci = k5[0]["combine_overhead_pct"], k5[0].get("combine_overhead_ci95")
      ci = f" (95% CI {ci[0]:+.1f}..{ci[1]:+.1f})" if ci else ""
      out.append((f"w{width}: combine overhead <= 2% of the floor at K=5", f"{v:+.1f}%{ci}", v <= 2))
    sp = [r for r in rs if "speedup_vs_naive" in r]
    if sp:
      need = 1.5 if width < 0.5 else 1.1
      low = min(sp, key=lambda r: r["speedup_vs_naive"])
      out.append((f"w{width}: >= {need}x the naive reference (every K)",
                  ", ".join(f"K={r['K']} {r['speedup_vs_naive']:.2f}x" + (
                      " [{:.2f}-{:.2f}]".format(*r["speedup_vs_naive_ci95"])
                      if "speedup_vs_naive_ci95" in r else "") for r in sp),
                  low["speedup_vs_naive"] >= need))
    if len(rs) >= 3:
      K = np.array([r["K"] for r in rs], float)
      ms = np.array([r["step"]["median_ms"] for r in rs])
      slope, icpt = np.polyfit(K, ms, 1)
      dev = 100 * (ms / (icpt + slope * K) - 1)
      out.append((f"w{width}: ms/iteration linear in K within 10%",
                  f"{icpt:.0f} + {slope:.1f} K ms; " + ", ".join(
                      f"K={int(k)} {d:+.1f}%" for k, d in zip(K, dev)) + "; ms per agent " + ", ".join(
                      f"{m / k:.0f}" for k, m in zip(K, ms)), bool(np.all(abs(dev) <= 10))))
      per = [r["step"]["trace_s"] / r["K"] for r in rs]
      out.append((f"w{width}: trace time not growing faster than K",
                  ", ".join(f"K={r['K']} {p:.2f} s/agent" for r, p in zip(rs, per)),
                  per[-1] <= 1.1 * per[0]))
  return out


def _targets_text(rows):
  verdict = {True: "met", False: "MISSED"}
  return "\n".join(f"  {verdict[ok]:>6}  {name}: {measured}" for name, measured, ok in targets(rows))


def main(argv):
  del argv
  variants = list(FLAGS.variants)
  os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if FLAGS.onednn else "0"  # before TensorFlow loads
  if FLAGS.child:
    row = _cell(int(FLAGS.K[0]), float(FLAGS.widths[0]), FLAGS.iters, FLAGS.batch, FLAGS.n_d,
                variants, FLAGS.d_width, FLAGS.pack)
    print("BENCH_ROW " + json.dumps(row))
    return
  rows = []
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for width in FLAGS.widths:
    for K in FLAGS.K:
      iters = FLAGS.iters_wide if float(width) >= 0.5 else FLAGS.iters
      cmd = [sys.executable, "-m", "bench.step", "--child", f"--K={K}", f"--widths={width}",
             f"--iters={iters}", f"--batch={FLAGS.batch}", f"--n_d={FLAGS.n_d}",
             f"--d_width={FLAGS.d_width}", f"--pack={FLAGS.pack}",
             f"--variants={','.join(variants)}", f"--onednn={FLAGS.onednn}"]
      res = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
      line = [l for l in res.stdout.splitlines() if l.startswith("BENCH_ROW ")]
      if not line:
        print(f"K={K} width={width} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        continue
      rows.append(json.loads(line[0][len("BENCH_ROW "):]))
      print(_table(rows[-1:]).splitlines()[-1], flush=True)
      _write(rows)  # after every cell: a long sweep stopped half-way keeps what it measured
  print(_table(rows))
  print("targets of the issue (paired ratios, medians over rotations):")
  print(_targets_text(rows))
  if FLAGS.out:
    print(f"wrote {FLAGS.out}")


def _write(rows):
  import platform  # pylint: disable=g-import-not-at-top
  meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
          "batch": FLAGS.batch, "n_d": FLAGS.n_d, "n_g": 1, "iters": FLAGS.iters,
          "iters_wide": FLAGS.iters_wide, "onednn": FLAGS.onednn}
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
