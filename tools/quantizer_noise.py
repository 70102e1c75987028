"""How much noise a quantizer setting puts into the combine, on a finished compressed run's state.

  python tools/quantizer_noise.py RUN_DIR [--bits=4] [--settings=256:32,160:8:subtractive,...]

ACTC's compress step sends C(psi_k - q_k). Its noise is what the combine (w_k = sum_l a_lk q_l)
passes on, so it is worth comparing across block sizes and scale formats at equal bits before
spending a main-job run on each. This reads the run's last checkpoint, takes for each agent k the
increment its next round would quantize, less the gradient (d_k = sum_l a_lk q_l - q_k: the
disagreement part), and prints the expected quantization variance over ||d_k||^2,
sum f (1 - f) Delta^2 with the scales the compressor itself would send (compression.Quantize),
averaged over agents, for D and G and both together. Lower is less noise for the same bits.
"""

import argparse
import json
import os

import ml_collections
import numpy as np
import tensorflow as tf

from tfdiffgan import compression
from tfdiffgan import topology


def expected_variance(quantizer, d):
  """E ||Q(d) - d||^2 for one row d [P] with the sent scales: f (1 - f) Delta^2 summed
  (stochastic rounding), or Delta^2 / 12 each (subtractive dither)."""
  payload = quantizer.compress(tf.constant(d[None], tf.float32), tf.constant([[0, 0]], tf.int64))
  scale = quantizer.sent_scale(payload).numpy()[0].astype(np.float64)
  B = quantizer.block or d.size
  x = np.pad(d.astype(np.float64), (0, scale.size * B - d.size)).reshape(scale.size, B)
  delta = 2 * scale[:, None] / quantizer.levels
  if quantizer.dither == "subtractive":  # uniform on [-Delta/2, Delta/2] wherever Delta > 0
    return float((np.broadcast_to(delta, x.shape).ravel()[:d.size] ** 2).sum() / 12)
  y = np.divide(x + scale[:, None], delta, out=np.zeros_like(x), where=delta > 0)
  f = y - np.floor(y)
  return float((f * (1 - f) * delta ** 2).sum())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("run_dir")
  parser.add_argument("--bits", type=int, default=4)
  parser.add_argument("--settings", default="256:32,1024:32,256:8,160:8,160:8:subtractive",
                      help="block:scale_bits[:dither] settings to compare")
  args = parser.parse_args()
  with open(os.path.join(args.run_dir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if config.compression.kind == "none":
    raise SystemExit(f"{args.run_dir} ran without compression: it keeps no q to read; give a "
                     "run with --config.compression.kind=quantize.")
  reader = tf.train.load_checkpoint(os.path.join(args.run_dir, "checkpoints"))
  A = topology.combination_matrix(config.topology, config.num_agents, seed=config.seed)
  K = config.num_agents
  settings = [(int(f[0]), int(f[1]), f[2] if len(f) > 2 else "stochastic")
              for f in (s.split(":") for s in args.settings.split(","))]
  print(f"{args.run_dir}: {args.bits} bits, E||Q(d_k) - d_k||^2 / ||d_k||^2, mean over {K} agents")
  increments = {}  # d_k for each network and agent, read and mixed once for every setting
  for net in ("d", "g"):
    q = np.stack([reader.get_tensor(f"compression/agent_{l}/q_{net}/.ATTRIBUTES/VARIABLE_VALUE")
                  for l in range(K)])
    increments[net] = [A[:, k] @ q - q[k] for k in range(K)]
  print("| block | scales | dither | D | G | D and G |\n|---|---|---|---|---|---|")
  for block, scale_bits, dither in settings:
    quantizer = compression.Quantize(args.bits, block, scale_bits, dither)
    ratio = {net: [expected_variance(quantizer, d) / float(np.sum(d ** 2)) for d in ds]
             for net, ds in increments.items()}
    both = np.mean(ratio["d"] + ratio["g"])
    print(f"| {block} | {'byte' if scale_bits == 8 else 'float32'} | {dither} "
          f"| {np.mean(ratio['d']):.4f} "
          f"| {np.mean(ratio['g']):.4f} | {both:.4f} |")


if __name__ == "__main__":
  main()
