"""Non-homogeneous Fashion-MNIST: two classes per agent; agent 0 sees T-shirts and trousers."""

from tfdiffgan.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.data.partition = "classes"
  return config
