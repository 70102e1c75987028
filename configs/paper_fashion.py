"""The paper's settings on Fashion-MNIST (Sec. 5): full-width DCGAN, SGD mu = 0.05, n_d = 5, n_g = 1."""

from tfdiffgan.configs import paper


def get_config():
  config = paper.get_config()
  config.data.name = "fashion_mnist"
  return config
