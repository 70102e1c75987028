"""Train K GAN agents by diffusion learning (Algorithm 1), or resume the run in --workdir.

  tfdiffgan-train --config=CONFIG.py --workdir=DIR [--config.FIELD=VALUE ...]
  (also bin/train in a checkout, and python -m tfdiffgan.train)

CONFIG.py is any Python file whose get_config() returns the fields below, e.g. a copy of the
repository's configs/mnist_noniid.py (they start from tfdiffgan.configs.default).
"""

from absl import flags
from ml_collections import config_flags

from tfdiffgan import main as main_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config: a Python file whose get_config() "
                                "returns the fields listed above.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries, samples and exports.")
flags.mark_flags_as_required(["config", "workdir"])


def _train(argv):
  del argv
  from tfdiffgan import cli, run  # pylint: disable=g-import-not-at-top  (TensorFlow: see run)
  cli.run_or_explain(run.train_and_evaluate, FLAGS.config, FLAGS.workdir)


def main():
  main_lib.run(_train, __name__, __doc__ + main_lib.config_fields())


if __name__ == "__main__":
  main()
