"""Run the paper's experiments as a resumable grid; write RESULTS_DIR/results.json and figures.

  tfdiffgan-reproduce --results_dir=results [--quick] [--only=PREFIX,...] [--config=GRID.py]
      [--summaries_dir=docs/results] [--report_only]

The grid's default is tfdiffgan/configs/reproduce.py (the repository's configs/reproduce.py).
Each finished cell is summarized in SUMMARIES_DIR/GRID/CELL/ (summary.json, agent_0.png); a
summarized cell is skipped, and --report_only rebuilds everything from the summaries alone.
"""

import os

from absl import flags
from ml_collections import config_flags

from tfdiffgan import configs
from tfdiffgan import main as main_lib

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(configs.__file__), "reproduce.py"),
    "The grid (default: tfdiffgan/configs/reproduce.py, found from any directory).",
    lock_config=True)
flags.DEFINE_string("results_dir", None, "Where runs, results.json and figures go.")
flags.DEFINE_bool("quick", False, "The minutes-long grid the tests run (tiny models, 2 iterations).")
flags.DEFINE_list("only", [], "Train only the cells whose names start with one of these prefixes "
                  "(e.g. theorem1_warm,mnist/iid); the rest are left for another invocation.")
flags.DEFINE_string("summaries_dir", "", "Where each finished cell's summary goes, under GRID/CELL/ "
                    "(default RESULTS_DIR/summaries; the repository keeps them in docs/results).")
flags.DEFINE_bool("report_only", False, "Train nothing: results.json, results.md and the figures "
                  "from the summaries in --summaries_dir alone.")
flags.mark_flags_as_required(["results_dir"])
FLAGS = flags.FLAGS


def _reproduce(argv):
  del argv
  from tfdiffgan import cli, reproduce  # pylint: disable=g-import-not-at-top  (TensorFlow: see run)
  results = cli.run_or_explain(reproduce.run_grid, FLAGS.config, FLAGS.results_dir, FLAGS.quick,
                               FLAGS.only, summaries_dir=FLAGS.summaries_dir,
                               report_only=FLAGS.report_only)
  for key, v in results["summary"]["final"].items():
    print(f"{key:<40} FID {v['fid_mean']:8.2f} +- {v['fid_seed_std']:.2f}  KID {v['kid_mean']:.4f}"
          f"  coverage {v['coverage_mean']:.1f} (min {v['coverage_min']:.0f})")
  for group in reproduce.THEOREM1_GROUPS:
    for graph, v in results["summary"][group].items():
      print(f"{group} {graph:<10} lambda_2 {v['lambda_2']:.3f} slope {v['slope']}")
  for ds, c in results["claims"]["per_dataset"].items():
    for claim, v in c.items():
      print(f"claim {ds}/{claim}: {'holds' if v['holds'] else 'does NOT hold'} {v}")
  for group in reproduce.THEOREM1_GROUPS:
    if group in results["claims"]:
      v = results["claims"][group]
      print(f"claim {group}: {'holds' if v['holds'] else 'does NOT hold'} {v}")
  for claim, v in results["claims"]["verdicts"].items():
    print(f"over both datasets, {claim}: "
          + {True: "holds", False: "does NOT hold", None: f"not yet (missing {v['missing']})"}[
              v["holds"]])
  if results["claims"].get("faults"):
    v = results["claims"]["faults"]
    print(f"claim faults: {'holds' if v['holds'] else 'does NOT hold'} {v}")
  print(f"wrote {os.path.join(FLAGS.results_dir, 'results.json')} and {len(results['figures'])} figures")


def main():
  main_lib.run(_reproduce, __name__, __doc__)


if __name__ == "__main__":
  main()
