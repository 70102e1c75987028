"""A worker of tests/test_multiworker.py: combines fixed phi through every exchange, saves w.

  TF_CONFIG=... python exchange_worker.py OUT_DIR MATRIX_FILE
"""

import json
import os
import sys

from tfdiffgan import diffusion  # first: the strategy must exist before any other TF op

strategy = diffusion.make_strategy("multiworker", timeout_seconds=60)

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from tfdiffgan import exchange, placement  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(out_dir, matrix_file):
  A = np.loadtxt(matrix_file)
  K = A.shape[0]
  N, worker = placement.cluster_from_env()
  where = placement.Placement(K, N)
  own = where.agents_of(worker)
  rng = np.random.default_rng(0)  # every worker draws every agent's phi, keeps its own
  phi_all = [rng.normal(size=(K, 3, 5)).astype(np.float32), rng.normal(size=(K, 7)).astype(np.float32)]
  phi_local = [tf.constant(p[own]) for p in phi_all]
  results = {}
  for name in ("allgather", "neighbors"):
    ex = exchange.make_exchange(name, where, support=A, timeout_seconds=60)

    def replica_fn(ex=ex):
      ex.begin_iteration()
      return ex.combine(phi_local, tf.constant(A, tf.float32), worker)

    out = tf.function(lambda replica_fn=replica_fn: strategy.run(replica_fn))()
    results[name] = {"w": [np.asarray(strategy.experimental_local_results(o)[0]).tolist()
                           for o in out], "traffic": ex.traffic}
  with open(os.path.join(out_dir, f"worker-{worker}.json"), "w") as f:
    json.dump({"agents": own, "results": results}, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
