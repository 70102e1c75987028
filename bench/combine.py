"""The combine step (eq. 10b) alone, three ways, to choose how DiffusionStep mixes weights.

  python -m bench.combine                 # K in {5, 20}, widths {0.25, 1.0}, D and G

  per_variable  stack the K copies of each variable, one tensordot with A, assign (the step's way)
  flat          concatenate each agent's variables into one vector, one [K, K] x [K, P] matmul, split
  sparse        as per_variable, with A as a SparseTensor (cost nnz * P instead of K^2 * P)
Median ms per combine of all of a model's variables (weights and BatchNorm statistics).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

FLAGS = flags.FLAGS


def combiners(A_np, variables):
  """The three ways to compute w_k = sum_l a_lk phi_l and assign it; all give the same weights."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfdiffgan import diffusion  # pylint: disable=g-import-not-at-top
  K = len(variables)
  A = tf.constant(A_np, tf.float32)
  shapes = [v.shape for v in variables[0]]
  sizes = [int(np.prod(s)) for s in shapes]
  idx = np.argwhere(A_np.T != 0)

  def per_variable():
    for group in zip(*variables):
      mixed = diffusion.mix(A, diffusion.stack_agents(group))
      for j, v in enumerate(group):
        v.assign(mixed[j])

  def flat():
    W = tf.stack([tf.concat([tf.reshape(v, [-1]) for v in agent], 0) for agent in variables])
    M = tf.matmul(A, W, transpose_a=True)
    for j, agent in enumerate(variables):
      for v, p, s in zip(agent, tf.split(M[j], sizes), shapes):
        v.assign(tf.reshape(p, s))

  def sparse():
    At = tf.sparse.SparseTensor(idx, tf.gather_nd(tf.transpose(A), idx), [K, K])
    for group in zip(*variables):
      phi = diffusion.stack_agents(group)
      mixed = tf.reshape(tf.sparse.sparse_dense_matmul(At, tf.reshape(phi, [K, -1])),
                         tf.shape(phi))
      for j, v in enumerate(group):
        v.assign(mixed[j])

  return {"per_variable": tf.function(per_variable), "flat": tf.function(flat),
          "sparse": tf.function(sparse)}


def main(argv):
  del argv
  from tfdiffgan import models, topology  # pylint: disable=g-import-not-at-top
  print(f"{'K':>3} {'width':>5} {'model':>5} {'params/agent':>12} | "
        f"{'per_variable':>12} {'flat':>8} {'sparse':>8}  (median ms per combine)")
  for K in map(int, FLAGS.K):
    A = topology.metropolis(topology.make_graph("paper5" if K == 5 else "ring", K))
    for width in map(float, FLAGS.widths):
      for name in ("D", "G"):
        nets = [models.make_discriminator(width) if name == "D" else
                models.make_generator(100, width) for _ in range(K)]
        variables = [models.combined_variables(m) for m in nets]
        params = sum(int(np.prod(v.shape)) for v in variables[0])
        ms = {}
        for key, fn in combiners(A, variables).items():
          fn()
          times = []
          for _ in range(FLAGS.calls):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
          ms[key] = 1000 * float(np.median(times))
        print(f"{K:>3} {width:>5} {name:>5} {params:>12,} | {ms['per_variable']:12.2f}"
              f" {ms['flat']:8.2f} {ms['sparse']:8.2f}", flush=True)


if __name__ == "__main__":  # flags only when run: the bench modules are also imported by tests
  flags.DEFINE_list("K", ["5", "20"], "Numbers of agents (paper5 graph for 5, else a ring).")
  flags.DEFINE_list("widths", ["0.25", "1.0"], "DCGAN width multipliers.")
  flags.DEFINE_integer("calls", 20, "Timed calls (median).")
  app.run(main)
