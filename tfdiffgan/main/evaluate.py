"""Score a run's agents (or one exported generator): FID, KID, class coverage.

  tfdiffgan-evaluate --workdir=runs/mnist_noniid          # every agent, writes WORKDIR/eval.json
  tfdiffgan-evaluate --model=runs/mnist_noniid/export/agent_0 --dataset=mnist --out=agent0.json
  tfdiffgan-evaluate --degradations --dataset=fashion_mnist   # the classifier's FID on corrupted data
"""

import json
import os

from absl import flags

from tfdiffgan import main as main_lib

flags.DEFINE_string("workdir", "", "A tfdiffgan-train workdir: scores every agent.")
flags.DEFINE_string("model", "", "One exported generator (a SavedModel directory).")
flags.DEFINE_string("dataset", "", "mnist or fashion_mnist (default: the run's, else mnist).")
flags.DEFINE_integer("num_samples", 10000, "Generated samples per agent.", lower_bound=2)
flags.DEFINE_integer("seed", 1, "Seed of the latent draws.")
flags.DEFINE_string("inception_weights", "", "Optional local InceptionV3 (no-top) weights file: "
                    "adds the standard Inception FID per agent.")
flags.DEFINE_bool("degradations", False, "Score corruptions of real data instead of a model.")
flags.DEFINE_string("out", "", "JSON output (default: WORKDIR/eval.json, or none for --model).")
FLAGS = flags.FLAGS


def _evaluate(argv):
  del argv
  from tfdiffgan import cli, evaluate  # pylint: disable=g-import-not-at-top  (TensorFlow: see run)
  if FLAGS.degradations:
    result = cli.run_or_explain(evaluate.degradation_report, FLAGS.dataset or "mnist")
  else:
    result = cli.run_or_explain(evaluate.evaluate, FLAGS.workdir, FLAGS.model, FLAGS.dataset,
                                FLAGS.num_samples, FLAGS.seed, FLAGS.inception_weights)
  print(evaluate.format_table(result))
  out = FLAGS.out or (os.path.join(FLAGS.workdir, "eval.json") if FLAGS.workdir else "")
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=2)
    print(f"wrote {out}")


def main():
  main_lib.run(_evaluate, __name__, __doc__)


if __name__ == "__main__":
  main()
