"""Draw samples from an exported generator.

  tfdiffgan-generate --model=runs/mnist_noniid/export/agent_0 --num=100 --out=grid.png [--seed=S]
  tfdiffgan-generate --model=... --num=16 --out=samples/      # one PNG per sample
"""

from absl import flags

from tfdiffgan import main as main_lib

flags.DEFINE_string("model", None, "An exported generator (WORKDIR/export/agent_K).")
flags.DEFINE_integer("num", 100, "Number of samples.", lower_bound=1)
flags.DEFINE_string("out", "grid.png", "A .png grid, or a directory (ending in /) of PNGs.")
flags.DEFINE_integer("seed", 0, "Seed of the latent draws.")
flags.mark_flags_as_required(["model"])
FLAGS = flags.FLAGS


def _generate(argv):
  del argv
  from tfdiffgan import cli, evaluate  # pylint: disable=g-import-not-at-top  (TensorFlow: see run)
  paths = cli.run_or_explain(evaluate.generate, FLAGS.model, FLAGS.num, FLAGS.out, FLAGS.seed)
  print(f"wrote {paths[0]}" if len(paths) == 1 else f"wrote {len(paths)} PNGs to {FLAGS.out}")


def main():
  main_lib.run(_generate, __name__, __doc__)


if __name__ == "__main__":
  main()
