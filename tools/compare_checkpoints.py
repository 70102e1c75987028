"""compare_checkpoints.py A B: every checkpoint tensor of every run in A against B (max abs diff)."""
import glob, os, sys
import numpy as np
import tensorflow as tf
a, b = sys.argv[1:3]
worst = 0.0; n = 0
for case in ("default", "mirrored", "mw"):
  for idx in sorted(glob.glob(f"{a}/{case}/checkpoints/**/ckpt-*.index", recursive=True)):
    rel = os.path.relpath(idx, a)[:-len(".index")]
    ra, rb = tf.train.load_checkpoint(os.path.join(a, rel)), tf.train.load_checkpoint(os.path.join(b, rel))
    keys = sorted(ra.get_variable_to_shape_map())
    assert keys == sorted(rb.get_variable_to_shape_map()), rel
    d = 0.0
    for k in keys:
      x, y = ra.get_tensor(k), rb.get_tensor(k)
      if isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
        d = max(d, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else d)
      else:
        assert x == y if not isinstance(x, np.ndarray) else (x == y).all(), (rel, k)
      n += 1
    worst = max(worst, d)
    print(f"{rel}: {len(keys)} tensors, max abs diff {d}")
print(f"TOTAL {n} tensors compared, max abs diff {worst}")
