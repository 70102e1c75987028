"""Can the K agents be vectorized on this CPU? Times K separate convolutions against one grouped
convolution (the agents stacked on the channel axis), forward and with the filter gradient.

  python -m bench.grouped_conv            # K=5, batch 64, the discriminator's layers at width 0.25

Vectorizing the agents (issue 5) needs grouped convolutions (or batched matmuls) that are faster
than K small ones *and* differentiable; this script measures both on the machine at hand.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

FLAGS = flags.FLAGS

LAYERS = ((28, 1, 16), (14, 16, 32), (7, 32, 64))  # (size, in, out): D's convolutions, width 0.25


def _median_ms(fn, calls):
  fn()
  times = []
  for _ in range(calls):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return 1000 * float(np.median(times))


def measure(K, batch, calls):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rows = []
  for size, cin, cout in LAYERS:
    xs = [tf.random.normal([batch, size, size, cin]) for _ in range(K)]
    ws = [tf.random.normal([5, 5, cin, cout]) for _ in range(K)]
    X, W = tf.concat(xs, -1), tf.concat(ws, -1)  # groups = K: filter [5, 5, cin, K * cout]

    def separate_grad():
      with tf.GradientTape() as tape:
        tape.watch(ws)
        y = tf.add_n([tf.reduce_sum(tf.nn.conv2d(x, w, 2, "SAME")) for x, w in zip(xs, ws)])
      return tape.gradient(y, ws)

    def grouped_grad():
      with tf.GradientTape() as tape:
        tape.watch(W)
        y = tf.reduce_sum(tf.nn.conv2d(X, W, 2, "SAME"))
      return tape.gradient(y, W)

    row = {"layer": f"{size}x{size}x{cin}->{cout}",
           "separate_fwd_ms": _median_ms(
               tf.function(lambda: [tf.nn.conv2d(x, w, 2, "SAME") for x, w in zip(xs, ws)]), calls),
           "separate_grad_ms": _median_ms(tf.function(separate_grad), calls)}
    for key, fn in (("grouped_fwd_ms", lambda: tf.nn.conv2d(X, W, 2, "SAME")),
                    ("grouped_grad_ms", grouped_grad)):
      try:
        row[key] = _median_ms(tf.function(fn), calls)
      except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        detail = [l for l in e.message.splitlines() if "requested" in l or "support" in l]
        row[key] = f"fails ({type(e).__name__}{': ' + detail[0].strip()[:60] if detail else ''})"
    rows.append(row)
  return rows


def main(argv):
  del argv
  rows = measure(FLAGS.K, FLAGS.batch, FLAGS.calls)
  fmt = lambda v: f"{v:9.2f}" if isinstance(v, float) else f"  {v}"
  print(f"K={FLAGS.K} batch={FLAGS.batch}: median ms per call over {FLAGS.calls} calls")
  print(f"{'layer':<16} {'sep fwd':>9} {'grp fwd':>9} {'sep grad':>9}  grouped grad")
  for r in rows:
    print(f"{r['layer']:<16} {fmt(r['separate_fwd_ms'])} {fmt(r['grouped_fwd_ms'])}"
          f" {fmt(r['separate_grad_ms'])} {fmt(r['grouped_grad_ms'])}")


if __name__ == "__main__":  # flags only when run: the bench modules are also imported by tests
  flags.DEFINE_integer("K", 5, "Agents.")
  flags.DEFINE_integer("batch", 64, "Batch per agent.")
  flags.DEFINE_integer("calls", 30, "Timed calls (median).")
  app.run(main)
