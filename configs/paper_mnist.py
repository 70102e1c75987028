"""The paper's settings on MNIST (Sec. 5): full-width DCGAN, SGD mu = 0.05, n_d = 5, n_g = 1.

GPU scale: full width costs seconds per iteration on a CPU (docs/PERFORMANCE.md). Switch shards with
--config.data.partition=classes for the non-homogeneous case. The settings are shared with
paper_fashion.py through tfdiffgan/configs/paper.py.
"""

from tfdiffgan.configs import paper


def get_config():
  return paper.get_config()
