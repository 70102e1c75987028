"""The paper's settings (Sec. 5): full-width DCGAN, SGD mu = 0.05, n_d = 5, n_g = 1, 20k iterations.

Shared by configs/paper_mnist.py and configs/paper_fashion.py, which differ only in the dataset.
GPU scale: full width costs seconds per iteration on a CPU (docs/PERFORMANCE.md).
"""

from tfdiffgan.configs import default


def get_config():
  config = default.get_config()
  config.model.width = 1.0
  config.train.clip_norm = 0.0  # the paper's plain SGD; set 5.0 if a seed diverges
  config.train.iterations = 20000
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  config.train.sample_every = 1000
  config.eval.eval_every = 1000
  return config
