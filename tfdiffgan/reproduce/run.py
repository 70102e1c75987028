"""Running the grid: train every cell that is not done, skip the finished ones, collect each
cell's record, then write results.json (once, atomically), results.md and the figures.

Each cell is an ordinary training run in RESULTS_DIR/runs/NAME; a cell whose run.json already
reaches its iterations is skipped, so the grid can be run piecewise and rerun after a crash.
A finished cell also leaves its summary (its record: settings, curves, final metrics, wall time;
and agent 0's 10x10 samples), a few KB in SUMMARIES_DIR/GRID/NAME/, meant to be committed: a
cell summarized there is skipped even without its run directory, so the grid spans sessions and
machines, and ``report_only`` rebuilds results, tables and figures from the summaries alone.
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
SUMMARY, SAMPLES = "summary.json", "agent_0.png"


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


def read_summary(directory):
  """A summarized cell's record, its samples path made absolute; None if there is none."""
  record = directory and files.read_json(os.path.join(directory, SUMMARY))
  if record:
    record["samples"] = os.path.abspath(os.path.join(directory, record["samples"]))
  return record or None


def write_summary(cell, results_dir, directory, wall_seconds=None):
  """The finished cell's record and agent 0's sample grid in ``directory`` (both atomic)."""
  record = cell_record(cell, results_dir)
  os.makedirs(directory, exist_ok=True)
  samples = os.path.join(results_dir, record["samples"])
  if os.path.exists(samples):
    files.copy_file(samples, os.path.join(directory, SAMPLES))
  record.update(samples=SAMPLES, cell=cell.name, wall_seconds=wall_seconds)
  files.write_json(os.path.join(directory, SUMMARY), record, indent=None)  # compact: a few KB
  return record


def summary_of(cell, where):
  """The cell's summary if it has one from a run of the same length whose pooled samples drew
  disjoint noise (metrics.POOLED_NOISE); another summary, e.g. from before the grid or the
  pooled score changed, is ignored: the cell is trained again."""
  record = read_summary(where(cell.name))
  if not record or record.get("iterations", cell.config.train.iterations) != (
      cell.config.train.iterations):
    return None
  from tfdiffgan.metrics import POOLED_NOISE  # pylint: disable=g-import-not-at-top (TensorFlow)
  pooled = (record.get("final") or {}).get("pooled")
  if pooled is not None and pooled.get("noise") != POOLED_NOISE:
    return None
  return record


def _summarized(cell, todo, where):
  """A cell is done when summarized; the warm-up, when every cell that starts from it is."""
  if cell.group != "warmup":
    return summary_of(cell, where) is not None
  warm = [c for c in todo if c.group == "theorem1_warm"]
  return bool(warm) and all(summary_of(c, where) is not None for c in warm)


def train_cells(todo, results_dir, only=(), log=print, where=lambda name: None):
  """Trains every cell neither complete nor summarized (those whose names start with a prefix in
  ``only``, if given), summarizing each as it finishes; returns the seconds each one took."""
  timings = {}
  for i, cell in enumerate(todo):
    name, config = cell.name, cell.config
    workdir, step = workdir_of(results_dir, name), f"[reproduce] {i + 1}/{len(todo)} {name}"
    if where(name) and _summarized(cell, todo, where):
      log(f"{step}: summarized in {where(name)}, skipped")
      continue
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
    if where(name) and cell.group != "warmup":
      write_summary(cell, results_dir, where(name), timings[name])
  return timings


def _final(workdir):
  """The final evaluation (metrics.json) with each agent's scores; None if it was not run."""
  final = files.read_json(os.path.join(workdir, "metrics.json"))
  if final is None:
    return None
  out = {"network": final["network"],
         "agents": [{k: a[k] for k in _AGENT_FIELDS if k in a} for a in final["agents"]]}
  if "pooled" in final:
    out["pooled"] = {k: final["pooled"][k] for k in _AGENT_FIELDS + ("samples_per_agent", "noise")
                     if k in final["pooled"]}
  if "raw" in final:
    out["raw_network"] = final["raw"]["network"]
  return out


def cell_record(cell, results_dir):
  """One finished cell as results.json keeps it: its settings, curves and final metrics."""
  name, group, config = cell
  workdir = workdir_of(results_dir, name)
  record = files.read_json(os.path.join(workdir, "run.json"))
  evaluations = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
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
                    for m in evaluations],
      # every agent's FID and the pooled FID at each evaluation: Fig. 3's band over agents
      "fid_curve_agents": [(m["iteration"], [a["fid"] for a in m.get("agents", [])])
                           for m in evaluations],
      "fid_curve_pooled": [(m["iteration"], m["pooled"]["fid"]) for m in evaluations
                           if "pooled" in m],
      "iterations": config.train.iterations, "n_d": config.train.n_d,
      "disagreement_curve": [(l["iteration"], l["disagreement_discriminator"])
                             for l in read_jsonl(os.path.join(workdir, "log.jsonl"))],
      "final": _final(workdir),
      "samples": os.path.relpath(os.path.join(workdir, "samples", "agent_0.png"), results_dir),
  }


def collect(todo, results_dir, where=lambda name: None, report_only=False):
  """Every finished cell's record by name: its summary if it has one, else (unless
  ``report_only``) its run directory's, summarized on the way. Cells not run yet (a partial
  grid) and the warm-up are left out of results, figures and claims."""
  runs = {}
  for cell in todo:
    if cell.group == "warmup":
      continue
    record = summary_of(cell, where)
    if record is None and not report_only and is_complete(
        workdir_of(results_dir, cell.name), cell.config.train.iterations):
      record = (write_summary(cell, results_dir, where(cell.name)) if where(cell.name)
                else cell_record(cell, results_dir))
      if where(cell.name):
        record = read_summary(where(cell.name))
    if record is not None:
      runs[cell.name] = record
  return runs


def run_grid(grid, results_dir, quick=False, only=(), log=print, summaries_dir="",
             report_only=False):
  """Trains every cell neither complete nor summarized (those whose names start with a prefix
  in ``only``, if given; none with ``report_only``), then writes results.json, results.md and
  the figures from every finished cell. Summaries go to SUMMARIES_DIR/GRID/CELL/ (default
  RESULTS_DIR/summaries; a --quick grid's under GRID_quick, never beside the real ones)."""
  if quick:
    grid = grid_lib.apply_quick(grid)
  summaries_dir = summaries_dir or os.path.join(results_dir, "summaries")
  name = grid.get("name", "paper") + ("_quick" if quick else "")
  where = lambda cell: os.path.join(summaries_dir, name, cell)
  todo = grid_lib.cells(grid, results_dir)
  timings = {} if report_only else train_cells(todo, results_dir, only, log, where)
  runs = collect(todo, results_dir, where, report_only)
  summary = analysis.summarize(runs)
  results = {"runs": runs, "summary": summary, "claims": analysis.claims(runs, summary),
             "settings": json.loads(grid.to_json()), "quick": quick,
             "seconds_this_invocation": timings}
  os.makedirs(results_dir, exist_ok=True)
  results["figures"] = report.figures(results, results_dir)
  files.write_json(os.path.join(results_dir, "results.json"), results)
  files.write_text(os.path.join(results_dir, "results.md"), report.markdown(results))
  return results
