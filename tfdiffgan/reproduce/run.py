"""Running the grid: train every cell that is not done, skip the finished ones, collect each
cell's record, then write results.json (once, atomically), results.md and the figures.

Each cell is an ordinary training run in RESULTS_DIR/runs/NAME; a cell whose run.json already
reaches its iterations is skipped, so the grid can be run piecewise and rerun after a crash.
"""

import json
import os
import time

from tfdiffgan import files
from tfdiffgan import topology
from tfdiffgan.reproduce import analysis
from tfdiffgan.reproduce import grid as grid_lib
from tfdiffgan.reproduce import report

_AGENT_FIELDS = ("fid", "kid", "kid_se", "coverage", "class_histogram", "check_class_histogram",
                 "robust_coverage")


def train(config, workdir):
  """The one call into training (imported here, lazily: TensorFlow's models load only when a
  cell is actually trained)."""
  from tfdiffgan import run as run_lib  # pylint: disable=g-import-not-at-top
  return run_lib.train_and_evaluate(config, workdir)


def workdir_of(results_dir, name):
  return os.path.join(results_dir, "runs", name)


def is_complete(workdir, iterations):
  """Whether the run in ``workdir`` has reached ``iterations`` (its run.json says so)."""
  record = files.read_json(os.path.join(workdir, "run.json"))
  return record is not None and record.get("iterations", 0) >= iterations


def read_jsonl(path):
  """The records of a run's curve file (log.jsonl, metrics.jsonl); none if there is no file."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def train_cells(todo, results_dir, only=(), log=print):
  """Trains every incomplete cell (those whose names start with a prefix in ``only``, if
  given); returns the seconds each trained cell took."""
  timings = {}
  for i, (name, _, config) in enumerate(todo):
    workdir, step = workdir_of(results_dir, name), f"[reproduce] {i + 1}/{len(todo)} {name}"
    if is_complete(workdir, config.train.iterations):
      log(f"{step}: complete, skipped")
      continue
    if only and not any(name.startswith(prefix) for prefix in only):
      log(f"{step}: not in --only, left for another invocation")
      continue
    log(step)
    t0 = time.time()
    train(config, workdir)
    timings[name] = time.time() - t0
  return timings


def _final(workdir):
  """The final evaluation (metrics.json) with each agent's scores; None if it was not run."""
  final = files.read_json(os.path.join(workdir, "metrics.json"))
  if final is None:
    return None
  return {"network": final["network"],
          "agents": [{k: a[k] for k in _AGENT_FIELDS if k in a} for a in final["agents"]]}


def cell_record(cell, results_dir):
  """One finished cell as results.json keeps it: its settings, curves and final metrics."""
  name, group, config = cell
  workdir = workdir_of(results_dir, name)
  record = files.read_json(os.path.join(workdir, "run.json"))
  return {
      "group": group, "mode": config.train.mode, "dataset": config.data.name,
      "partition": config.data.partition, "seed": config.seed,
      "graph": config.topology.graph, "mu": config.train.learning_rate,
      "link_failure": config.topology.get("link_failure", 0.0),
      "agent_dropout": config.topology.get("agent_dropout", 0.0),
      "final_disagreement": [record.get("disagreement_discriminator"),
                             record.get("disagreement_generator")],
      "lambda_2": record["lambda_2"], "train_seconds": record["train_seconds"],
      "spectral_factor": topology.spectral_factor(record["combination_matrix"]),
      "parameters_sent_per_iteration": record["parameters_sent_per_iteration"],
      "fid_curve": [(m["iteration"], m["network"]["fid_mean"], m["network"]["fid_min"],
                     m["network"]["fid_max"])
                    for m in read_jsonl(os.path.join(workdir, "metrics.jsonl"))],
      "disagreement_curve": [(l["iteration"], l["disagreement_discriminator"])
                             for l in read_jsonl(os.path.join(workdir, "log.jsonl"))],
      "final": _final(workdir),
      "samples": os.path.relpath(os.path.join(workdir, "samples", "agent_0.png"), results_dir),
  }


def collect(todo, results_dir):
  """Every finished cell's record by name; cells not run yet (a partial grid) and the warm-up
  are left out of results, figures and claims."""
  return {cell.name: cell_record(cell, results_dir) for cell in todo
          if cell.group != "warmup"
          and is_complete(workdir_of(results_dir, cell.name), cell.config.train.iterations)}


def run_grid(grid, results_dir, quick=False, only=(), log=print):
  """Trains every incomplete cell (those whose names start with a prefix in ``only``, if given),
  then writes results.json, results.md and the figures from every complete cell."""
  if quick:
    grid = grid_lib.apply_quick(grid)
  todo = grid_lib.cells(grid, results_dir)
  timings = train_cells(todo, results_dir, only, log)
  runs = collect(todo, results_dir)
  summary = analysis.summarize(runs)
  results = {"runs": runs, "summary": summary, "claims": analysis.claims(runs, summary),
             "settings": json.loads(grid.to_json()), "quick": quick,
             "seconds_this_invocation": timings}
  results["figures"] = report.figures(results, results_dir)
  files.write_json(os.path.join(results_dir, "results.json"), results)
  files.write_text(os.path.join(results_dir, "results.md"), report.markdown(results))
  return results
