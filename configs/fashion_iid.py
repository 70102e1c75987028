"""Homogeneous Fashion-MNIST: a random equal split across five agents (Sec. 5.1)."""

from tfdiffgan.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  return config
