"""Homogeneous MNIST: a random equal split across five agents (the paper's Sec. 5.1)."""

from tfdiffgan.configs import default


def get_config():
  return default.get_config()
