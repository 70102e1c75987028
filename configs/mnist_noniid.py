"""The README's main job: five agents on `paper5`, each seeing only two MNIST digits.

The paper's optimizer (SGD, mu = 0.05, n_d = 5, n_g = 1) at DCGAN width 0.25 so that every agent
learns to draw all ten digits within about 10 minutes on 2 CPU cores.
"""

from tfdiffgan.configs import default


def get_config():
  config = default.get_config()
  config.data.partition = "classes"
  return config
