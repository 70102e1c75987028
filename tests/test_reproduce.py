"""The reproduce grid: its cells (fast), the analysis and report of synthetic records (fast), the
run loop with a stand-in for training (fast), and bin/reproduce on two real cells (e2e)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from tfdiffgan import config as config_lib
from tfdiffgan import files
from tfdiffgan import reproduce
from tfdiffgan.configs import reproduce as grid_config
from tfdiffgan.configs import reproduce_tuned as tuned_config
from tfdiffgan.reproduce import analysis
from tfdiffgan.reproduce import run as run_lib

MODES = {"noncooperative", "centralized", "diffusion", "fusion", "gossip"}


def _grid(quick):
  g = grid_config.get_config()
  return reproduce.apply_quick(g) if quick else g


# --- grid: what to run -------------------------------------------------------------------------

def test_classes_for_gives_agent_zero_the_zeros_and_ones():
  assert reproduce.classes_for(5) == [[0, 1], [2, 6], [3, 7], [4, 8], [5, 9]]
  assert reproduce.classes_for(2) == [[0, 1], list(range(2, 10))]


def test_default_grid_runs_every_mode_on_both_datasets_and_baselines_on_mnist_only():
  cells = reproduce.cells(_grid(quick=False), "R")
  names = [c.name for c in cells]
  assert len(names) == len(set(names)) == 57
  homog = [c for c in cells if c.group == "homogeneous"]
  assert {c.config.train.mode for c in homog if c.config.data.name == "mnist"} == MODES
  assert {c.config.train.mode for c in homog if c.config.data.name == "fashion_mnist"} == (
      MODES - {"fusion", "gossip"})
  assert all(c.config.num_agents == 5 and c.config.topology.graph == "paper5" for c in homog)
  noniid = [c for c in cells if c.group == "noniid"]
  assert len(noniid) == 8 and all(c.config.data.partition == "classes" for c in noniid)
  assert all(c.config.data.classes[0] == [0, 1] for c in noniid)
  for c in homog + noniid:  # the seed in the name is the run's seed
    assert c.name.endswith(f"/seed{c.config.seed}") and c.config.train.iterations == 300
  assert sum(c.group == "theorem1" for c in cells) == sum(c.group == "theorem1_warm"
                                                         for c in cells) == 12
  faults = [c for c in cells if c.group == "faults"]
  assert [(c.config.topology.link_failure, c.config.topology.agent_dropout) for c in faults] == [
      (p, q) for q in (0.0, 0.2) for p in (0.0, 0.1, 0.3, 0.5)]
  assert all(c.config.train.iterations == 700 and c.config.seed == 0 for c in faults)


def test_grid_is_seed_major_with_theorem1_after_the_first_seed():
  groups_seeds = [(c.group, c.config.seed) for c in reproduce.cells(_grid(quick=False), "R")]
  first_seed1 = groups_seeds.index(("homogeneous", 1))
  assert {s for g, s in groups_seeds[:first_seed1] if g in ("homogeneous", "noniid")} == {0}
  assert all(g not in ("theorem1", "theorem1_warm", "warmup") for g, _ in
             groups_seeds[first_seed1:])
  assert groups_seeds[-1][0] == "faults"


def test_quick_grid_is_tiny_and_keeps_every_mode_seed_and_sweep():
  cells = reproduce.cells(_grid(quick=True), "R")
  assert len(cells) == 25
  main = [c for c in cells if c.group in ("homogeneous", "noniid")]
  assert {c.config.train.mode for c in main if c.group == "homogeneous"} == MODES
  assert {c.config.seed for c in main} == {0, 1}
  assert {c.config.data.name for c in cells} == {"mnist"}
  assert all(c.config.num_agents == 2 and c.config.model.width == 0.125
             and c.config.train.iterations == 2 for c in main)
  assert sorted(c.name for c in cells if c.group == "theorem1") == [
      "theorem1/complete/mu0.025", "theorem1/complete/mu0.05", "theorem1/ring/mu0.025",
      "theorem1/ring/mu0.05"]
  assert [c.name for c in cells if c.group == "faults"] == ["faults/p0.0/q0.2/seed0",
                                                           "faults/p0.5/q0.2/seed0"]


def test_theorem1_cells_set_mu_skip_fid_and_warm_ones_start_from_the_warmup():
  cells = reproduce.cells(_grid(quick=True), "R")
  sweep = [c for c in cells if c.group in ("theorem1", "theorem1_warm", "warmup")]
  assert all(c.config.num_agents == 3 and c.config.eval.eval_every == 0
             and c.config.eval.final_samples == 0 for c in sweep)
  for c in sweep:
    if c.group != "warmup":
      assert c.name.endswith(f"/mu{c.config.train.learning_rate}")
  (warmup,) = [c for c in sweep if c.group == "warmup"]
  assert warmup.config.topology.graph == "complete"
  assert {c.config.train.init_from for c in sweep if c.group == "theorem1_warm"} == {
      os.path.join("R", "runs", warmup.name)}
  assert sweep.index(warmup) < min(i for i, c in enumerate(sweep) if c.group == "theorem1_warm")


@pytest.mark.parametrize("quick", [False, True])
def test_every_cell_config_is_valid(quick):
  for c in reproduce.cells(_grid(quick), "R"):
    if not c.config.train.init_from:  # the warm-up's workdir does not exist yet
      config_lib.validate(c.config)


# --- analysis: summaries, fits and claims of synthetic records ----------------------------------
def _run(group, mode, dataset="mnist", fid=10.0, hists=None, graph="paper5", mu=0.05, lam=0.5,
         dis=None, seed=0):
  agents = [{"fid": fid, "kid": 0.0, "kid_se": 0.0, "coverage": 10, "class_histogram": h}
            for h in (hists or [[0.1] * 10])]
  return {"group": group, "mode": mode, "dataset": dataset,
          "partition": "classes" if group == "noniid" else "iid", "seed": seed,
          "graph": graph, "mu": mu, "lambda_2": lam, "train_seconds": 1.0,
          "parameters_sent_per_iteration": 0, "fid_curve": [],
          "disagreement_curve": [(i, d) for i, d in enumerate(dis or [])],
          "final": None if group == "theorem1" else {
              "network": {"fid_mean": fid, "kid_mean": 0.0, "coverage_mean": 10.0,
                          "coverage_min": 10}, "agents": agents}}


def _sweep(power=2, graphs=(("ring", 0.6, 2.0), ("grid", 0.5, 1.0), ("complete", 0.0, 1e-12))):
  """Theorem 1 runs whose disagreement is scale * mu^power after a transient ten times larger."""
  runs = {}
  for g, lam, scale in graphs:
    for mu in (0.025, 0.05, 0.1):
      steady = scale * mu ** power
      runs[f"{g}{mu}"] = _run("theorem1", "diffusion", graph=g, mu=mu, lam=lam,
                              dis=[10 * steady] * 4 + [steady] * 4)
  return runs


def test_theorem1_slope_of_a_mu_squared_disagreement_is_two():
  fits = analysis.summarize(_sweep(power=2))["theorem1"]
  assert fits["ring"]["slope"] == pytest.approx(2.0) and fits["grid"]["slope"] == pytest.approx(2.0)
  # the steady value is the second half of the curve: the transient is left out
  assert fits["ring"]["disagreement"] == pytest.approx([2.0 * m ** 2 for m in (0.025, 0.05, 0.1)])
  assert fits["ring"]["lambda_factor"] == pytest.approx(0.6 ** 2 / 0.4 ** 2)
  assert fits["complete"]["slope"] is None  # lambda_2 = 0: nothing to fit
  claim = analysis.claims(_sweep(power=2), analysis.summarize(_sweep(power=2)))["theorem1"]
  assert claim["holds"] and claim["monotone_in_lambda_2_at_each_mu"] == [True] * 3


def test_theorem1_claim_fails_for_a_disagreement_linear_in_mu():
  runs = _sweep(power=1)
  summary = analysis.summarize(runs)
  assert summary["theorem1"]["ring"]["slope"] == pytest.approx(1.0)
  assert not analysis.claims(runs, summary)["theorem1"]["holds"]


def test_theorem1_claim_fails_when_disagreement_does_not_grow_with_lambda_2():
  runs = _sweep(graphs=(("ring", 0.6, 1.0), ("grid", 0.5, 2.0)))
  claim = analysis.claims(runs, analysis.summarize(runs))["theorem1"]
  assert claim["graphs_by_lambda_2"] == ["grid", "ring"]
  assert claim["monotone_in_lambda_2_at_each_mu"] == [False] * 3 and not claim["holds"]


def test_summary_averages_final_metrics_over_seeds_per_mode():
  runs = {"a": _run("homogeneous", "diffusion", fid=10.0, seed=0),
          "b": _run("homogeneous", "diffusion", fid=12.0, seed=1),
          "c": _run("homogeneous", "noncooperative", fid=20.0),
          "t": _sweep()["ring0.05"]}
  final = analysis.summarize(runs)["final"]
  assert list(final) == ["mnist/iid/diffusion", "mnist/iid/noncooperative"]  # theorem1 apart
  assert final["mnist/iid/diffusion"]["seeds"] == 2
  assert final["mnist/iid/diffusion"]["fid_mean"] == pytest.approx(11.0)
  assert final["mnist/iid/diffusion"]["fid_seed_std"] == pytest.approx(1.0)
  assert final["mnist/iid/diffusion"]["agent0_histogram"] == pytest.approx([0.1] * 10)


def test_claims_follow_the_numbers():
  """claims() reports what the runs say, both ways: a claim that holds and one that fails."""
  only01 = [0.5, 0.45] + [0.00625] * 8
  runs = {"a": _run("homogeneous", "centralized", fid=10.0),
          "b": _run("homogeneous", "diffusion", fid=10.5),
          "c": _run("homogeneous", "noncooperative", fid=14.0),
          "d": _run("noniid", "diffusion", hists=[[0.1] * 10, [0.04] + [0.96 / 9] * 9]),
          "e": _run("noniid", "noncooperative", hists=[only01]),
          **_sweep()}
  c = reproduce.claims(runs, reproduce.summarize(runs))
  homog, noniid = c["per_dataset"]["mnist"]["homogeneous"], c["per_dataset"]["mnist"]["nonhomogeneous"]
  assert homog["holds"] and abs(homog["diffusion_over_centralized"] - 1.05) < 1e-9
  assert not noniid["holds"]  # the second diffusion agent has only 4% of class 0
  assert noniid["diffusion_agents_at_least_5pct_each_class"] == 1
  assert abs(noniid["noncooperative_agent0_share_in_own_two_classes"][0] - 0.95) < 1e-9
  th = c["theorem1"]
  assert th["holds"] and abs(th["slopes"]["ring"] - 2.0) < 1e-6
  assert th["graphs_by_lambda_2"] == ["complete", "grid", "ring"] and "complete" not in th["slopes"]
  runs["b"] = _run("homogeneous", "diffusion", fid=12.0)  # 20% worse than centralized
  assert not reproduce.claims(runs, reproduce.summarize(runs))["per_dataset"]["mnist"][
      "homogeneous"]["holds"]


def test_a_claim_without_its_runs_is_absent_not_false():
  runs = {"b": _run("homogeneous", "diffusion", fid=10.5)}
  c = reproduce.claims(runs, reproduce.summarize(runs))
  assert c["per_dataset"] == {"mnist": {}}
  assert c["verdicts"]["homogeneous"] == {"holds": None, "missing": ["mnist", "fashion_mnist"],
                                          "per_dataset": {}}


def test_faults_claim_follows_the_numbers():
  def row(p, fid, cov=10, share=0.06):
    return {"link_failure": p, "agent_dropout": 0.0, "fid_mean": fid, "seed": 0,
            "coverage_per_agent": [10, cov], "weakest_class_share": share}
  table = {"p0.0/q0.0": [row(0.0, 10.0)], "p0.3/q0.0": [row(0.3, 11.4)]}
  claim = reproduce.faults_claim(table)
  assert claim["holds"] and abs(claim["ratio"] - 1.14) < 1e-9
  table["p0.3/q0.0"] = [row(0.3, 11.6)]
  assert not reproduce.faults_claim(table)["holds"]  # 16% worse
  table["p0.3/q0.0"] = [row(0.3, 10.0, cov=9)]
  assert not reproduce.faults_claim(table)["holds"]  # an agent lost a digit
  assert reproduce.faults_claim({"p0.0/q0.0": [row(0.0, 10.0)]}) is None


def test_nonhomogeneous_claim_needs_both_classifiers():
  """A class share the check classifier reads under 5% fails the claim even when the main
  classifier's histogram alone would pass it."""
  only01 = [0.5, 0.45] + [0.00625] * 8
  runs = {"d": _run("noniid", "diffusion", hists=[[0.1] * 10, [0.1] * 10]),
          "e": _run("noniid", "noncooperative", hists=[only01])}
  for a in runs["d"]["final"]["agents"]:
    a["check_class_histogram"] = [0.1] * 10

  def claim():
    return reproduce.claims(runs, reproduce.summarize(runs))["per_dataset"]["mnist"][
        "nonhomogeneous"]
  assert claim()["holds"] and claim()["classifiers"] == "main and check"
  runs["d"]["final"]["agents"][1]["check_class_histogram"] = [0.03] + [0.97 / 9] * 9
  assert not claim()["holds"]
  assert claim()["diffusion_min_class_share_over_agents_and_seeds"] == pytest.approx(0.03)
  assert claim()["diffusion_agents_at_least_5pct_each_class"] == 1


# --- report: markdown of a synthetic results dict -----------------------------------------------

def test_markdown_lists_every_mode_graph_fault_cell_and_the_wall_time():
  runs = {"a": _run("homogeneous", "centralized", fid=10.0),
          "b": _run("homogeneous", "diffusion", fid=10.5),
          **_sweep(graphs=(("ring", 0.6, 1.0), ("complete", 0.0, 1e-12)))}
  runs["f"] = {**_run("faults", "diffusion", fid=11.0, hists=[[0.1] * 10] * 2),
               "link_failure": 0.5, "agent_dropout": 0.2, "final_disagreement": [0.01, 0.02]}
  text = reproduce.markdown({"runs": runs, "summary": reproduce.summarize(runs)})
  assert "| mnist/iid/centralized | 1 | 10.00 |" in text and "| mnist/iid/diffusion | 1 | 10.50 |" in text
  assert "| ring | 0.600 | 2.25 | - |" in text and "| complete | 0.000 | 0.00 | - |" in text
  assert "| 0.5 | 0.2 | 11.0 11.0 | 11.00 | 0.100 | 0.01 / 0.02 | 0.500 | 0 |" in text
  runs["b"]["wall_seconds"] = 600.0
  text = reproduce.markdown({"runs": runs, "summary": reproduce.summarize(runs)})
  assert "| b | 10.0 min | 10.50 (10.50-10.50) | - | - | 10.0% / - |" in text  # one row per cell
  assert "| ring0.1 |" not in text                        # Theorem 1's runs are not cells
  assert text.rstrip().endswith("Wall time of these cells: 0.17 h (each as its run measured it, "
                                "cells that shared the cores included).")


# --- run: train what is not done, skip the rest, collect (training stood in for) ----------------

def _fake_train(trained):
  """Stands in for training: writes the records a finished run leaves (run.json, the curves,
  metrics.json when there is a final evaluation, agent 0's sample grid)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  def train(config, workdir):
    trained.append(workdir)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    plt.imsave(os.path.join(workdir, "samples", "agent_0.png"), np.zeros((28, 28)), cmap="gray")
    lam = {"ring": 0.6, "complete": 0.0}.get(config.topology.graph, 0.5)
    mu, iterations = config.train.learning_rate, config.train.iterations
    for t in range(1, iterations + 1):
      files.append_jsonl(os.path.join(workdir, "log.jsonl"), {
          "iteration": t, "disagreement_discriminator": (1 + lam) * mu ** 2})
    if config.eval.final_samples:
      agent = {"fid": 50.0, "kid": 1.0, "kid_se": 0.1, "coverage": 10, "entropy_bits": 3.3,
               "class_histogram": [0.1] * 10, "check_class_histogram": [0.1] * 10}
      pooled = {**agent, "fid": 45.0, "samples_per_agent": 10, "noise": "disjoint"}
      files.append_jsonl(os.path.join(workdir, "metrics.jsonl"), {
          "iteration": iterations, "network": {"fid_mean": 50.0, "fid_min": 40.0, "fid_max": 60.0},
          "agents": [agent] * config.num_agents, "pooled": pooled})
      files.write_json(os.path.join(workdir, "metrics.json"), {
          "network": {"fid_mean": 50.0, "kid_mean": 1.0, "coverage_mean": 10.0,
                      "coverage_min": 10}, "agents": [agent] * config.num_agents,
          "pooled": pooled})
    files.write_json(os.path.join(workdir, "run.json"), {
        "iterations": iterations, "lambda_2": lam, "train_seconds": 1.0,
        "combination_matrix": [[0.5, 0.5], [0.5, 0.5]],
        "parameters_sent_per_iteration": 0 if config.train.mode == "noncooperative" else 100,
        "disagreement_discriminator": 0.0, "disagreement_generator": 0.0})
  return train


@pytest.fixture
def fake_training(monkeypatch):
  trained, writes = [], []
  monkeypatch.setattr(run_lib, "train", _fake_train(trained))
  write_json = files.write_json

  def counted(path, obj, **kwargs):
    writes.append(os.path.basename(path))
    write_json(path, obj, **kwargs)
  monkeypatch.setattr(files, "write_json", counted)
  return trained, writes


def test_run_grid_trains_each_cell_once_writes_results_once_and_skips_them_on_rerun(
    tmp_path, fake_training):
  trained, writes = fake_training
  out, lines = str(tmp_path), []
  results = reproduce.run_grid(_grid(quick=False), out, quick=True, log=lines.append)
  assert len(trained) == 25 and writes.count("results.json") == 1
  assert len(results["runs"]) == 24  # every cell but the warm-up
  assert json.load(open(os.path.join(out, "results.json"))) == json.loads(json.dumps(results))
  assert list(results) == ["runs", "summary", "claims", "settings", "quick",
                           "seconds_this_invocation", "figures"]
  assert results["settings"]["num_agents"] == 2 and results["quick"] is True
  assert set(results["summary"]["theorem1_warm"]) == {"ring", "complete"}
  assert results["summary"]["theorem1"]["ring"]["slope"] == pytest.approx(2.0)
  assert set(results["summary"]["faults"]) == {"p0.0/q0.2", "p0.5/q0.2"}
  assert results["claims"]["faults"] is None  # the claim needs q = 0 runs
  assert set(results["figures"]) == {"fig3_mnist.png", "fig45_mnist.png", "fig6_mnist.png",
                                     "communication.png", "theorem1.png", "theorem1_warm.png"}
  assert "| mnist/iid/gossip | 2 | 50.00 |" in open(os.path.join(out, "results.md")).read()
  del trained[:], lines[:]
  again = reproduce.run_grid(_grid(quick=False), out, quick=True, log=lines.append)
  assert trained == [] and again["seconds_this_invocation"] == {}
  assert sum(l.endswith(", skipped") for l in lines) == 25
  assert again["runs"] == results["runs"]


def test_only_trains_the_cells_under_its_prefixes_and_collects_only_finished_ones(
    tmp_path, fake_training):
  trained, _ = fake_training
  lines = []
  results = reproduce.run_grid(_grid(quick=True), str(tmp_path), only=["theorem1/ring"],
                               log=lines.append)
  assert sorted(results["runs"]) == ["theorem1/ring/mu0.025", "theorem1/ring/mu0.05"]
  assert len(trained) == 2 and sum("not in --only" in l for l in lines) == 23
  assert results["figures"] == ["theorem1.png"] and results["summary"]["final"] == {}
  # a run stopped short of its iterations is neither skipped nor collected
  files.write_json(os.path.join(tmp_path, "runs", "theorem1", "ring", "mu0.05", "run.json"),
                   {"iterations": 1})
  assert not run_lib.is_complete(os.path.join(tmp_path, "runs", "theorem1", "ring", "mu0.05"), 2)
  assert list(run_lib.collect(reproduce.cells(_grid(quick=True), str(tmp_path)),
                              str(tmp_path))) == ["theorem1/ring/mu0.025"]


# --- bin/reproduce end to end, on two real cells ------------------------------------------------

@pytest.mark.e2e
def test_two_cells_train_collect_report_and_are_skipped_on_rerun(tmp_path):
  """bin/reproduce --quick --only: a diffusion and a non-cooperative cell really train, and
  results.json, results.md and the figures come from their records; a rerun trains nothing."""
  out = str(tmp_path / "results")
  cmd = [sys.executable, os.path.join(ROOT, "bin", "reproduce"), f"--results_dir={out}", "--quick",
         f"--config={os.path.join(ROOT, 'configs', 'reproduce.py')}",
         "--only=mnist/iid/diffusion/seed0,mnist/iid/noncooperative/seed0"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.count("not in --only") == 23
  results = json.load(open(os.path.join(out, "results.json")))
  assert sorted(results["runs"]) == ["mnist/iid/diffusion/seed0", "mnist/iid/noncooperative/seed0"]
  assert sorted(results["seconds_this_invocation"]) == sorted(results["runs"])
  final = results["summary"]["final"]
  assert set(final) == {"mnist/iid/diffusion", "mnist/iid/noncooperative"}
  for v in final.values():
    assert v["seeds"] == 1 and v["fid_mean"] > 0 and len(v["agent0_histogram"]) == 10
  assert final["mnist/iid/noncooperative"]["parameters_sent_per_iteration"] == 0
  assert final["mnist/iid/diffusion"]["parameters_sent_per_iteration"] > 0
  for v in results["runs"].values():
    assert v["fid_curve"] and v["disagreement_curve"] and len(v["final"]["agents"]) == 2
  assert results["figures"] == ["fig3_mnist.png", "fig45_mnist.png", "communication.png"]
  for name in results["figures"]:
    assert os.path.getsize(os.path.join(out, name)) > 1000
  assert "| mnist/iid/diffusion | 1 |" in open(os.path.join(out, "results.md")).read()
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count(", skipped") == 2
  assert json.load(open(os.path.join(out, "results.json")))["seconds_this_invocation"] == {}


# --- the grid on the tuned recipe: its cells, summaries across sessions, bars, figures ---------

def _tuned(quick=False):
  g = tuned_config.get_config()
  return reproduce.apply_quick(g) if quick else g


def test_tuned_grid_uses_the_main_jobs_recipe_and_has_ten_points_per_curve():
  cells = reproduce.cells(_tuned(), "R")
  main = [c for c in cells if c.group in ("homogeneous", "noniid")]
  assert sorted(c.name for c in main) == sorted(
      [f"mnist/iid/{m}/seed{s}" for m in ("noncooperative", "centralized", "diffusion")
       for s in (0, 1)] + ["mnist/iid/fusion/seed0", "mnist/iid/gossip/seed0"]
      + [f"mnist/classes/{m}/seed{s}" for m in ("diffusion", "noncooperative") for s in (0, 1)]
      + [f"fashion_mnist/iid/{m}/seed0" for m in ("noncooperative", "centralized", "diffusion")]
      + [f"fashion_mnist/classes/{m}/seed0" for m in ("diffusion", "noncooperative")])
  for c in main:
    t = c.config.train
    assert (c.config.model.width, c.config.model.d_width, t.n_d) == (0.375, 0.5, 1)
    assert (t.iterations, t.lr_decay, t.ema_decay) == (2700, 0.99, 0.995)
    e = c.config.eval  # nine periodic evaluations (not at the last iteration) and the final one
    assert len(range(e.eval_every, t.iterations, e.eval_every)) + 1 == 10
  sweep = [c for c in cells if c.group not in ("homogeneous", "noniid")]
  assert {c.group for c in sweep} == {"warmup", "theorem1_warm"} and len(sweep) == 13
  assert all(c.config.train.lr_decay == 0 and c.config.train.ema_decay == 0 for c in sweep)
  # the paper's grid keeps its own settings
  for c in reproduce.cells(_grid(quick=False), "R"):
    assert c.config.train.n_d == 5 and c.config.train.lr_decay == 0.0


def test_tuned_grid_cells_are_valid():
  for c in reproduce.cells(_tuned(), "R") + reproduce.cells(_tuned(quick=True), "R"):
    if not c.config.train.init_from:
      config_lib.validate(c.config)


def test_summaries_let_a_rerun_skip_cells_without_their_run_directories(tmp_path, fake_training):
  trained, _ = fake_training
  summaries, lines = str(tmp_path / "docs"), []
  first = reproduce.run_grid(_tuned(), str(tmp_path / "a"), quick=True,
                             summaries_dir=summaries, log=lines.append)
  assert len(trained) == 12 and len(first["runs"]) == 11
  cell = os.path.join(summaries, "tuned_quick", "mnist", "iid", "diffusion", "seed0")
  assert sorted(os.listdir(cell)) == ["agent_0.png", "summary.json"]
  record = json.load(open(os.path.join(cell, "summary.json")))
  assert record["final"]["pooled"]["fid"] == 45.0 and record["fid_curve_pooled"] == [[2, 45.0]]
  assert record["samples"] == "agent_0.png" and record["wall_seconds"] >= 0
  assert os.path.getsize(os.path.join(cell, "summary.json")) < 8000
  # another session: no run directories, every cell (and the warm-up) skipped from its summary
  del trained[:], lines[:]
  again = reproduce.run_grid(_tuned(), str(tmp_path / "b"), quick=True,
                             summaries_dir=summaries, log=lines.append)
  assert trained == [] and sum("summarized in" in l for l in lines) == 12
  assert not os.path.exists(tmp_path / "b" / "runs")
  assert json.dumps(again["claims"]) == json.dumps(first["claims"])
  report = reproduce.run_grid(_tuned(), str(tmp_path / "c"), quick=True,
                              summaries_dir=summaries, report_only=True)
  assert sorted(report["runs"]) == sorted(first["runs"]) and report["figures"] == first["figures"]
  assert report["summary"]["final"]["mnist/iid/diffusion"]["pooled_fid_mean"] == 45.0
  # a summary from a run of another length does not stand for the cell
  longer = _tuned()
  longer.quick.iterations = 3
  del lines[:]
  reproduce.run_grid(longer, str(tmp_path / "d"), quick=True, summaries_dir=summaries,
                     only=["mnist/iid/diffusion/seed0"], log=lines.append)
  assert [os.path.basename(w) for w in trained] == ["seed0"]
  assert json.load(open(os.path.join(cell, "summary.json")))["iterations"] == 3
  # nor does one whose pooled samples shared their noise across agents (scored before the fix)
  stale = json.load(open(os.path.join(cell, "summary.json")))
  del stale["final"]["pooled"]["noise"]
  json.dump(stale, open(os.path.join(cell, "summary.json"), "w"))
  del trained[:]
  reproduce.run_grid(longer, str(tmp_path / "e"), quick=True, summaries_dir=summaries,
                     only=["mnist/iid/diffusion/seed0"], log=lines.append)
  assert [os.path.basename(w) for w in trained] == ["seed0"]
  assert json.load(open(os.path.join(cell, "summary.json")))["final"]["pooled"]["noise"] == \
      "disjoint"


def _agents(k=5, share=0.1, check=None):
  hist = [share] + [(1 - share) / 9] * 9
  return [{"fid": 10.0, "class_histogram": hist, "check_class_histogram": check or hist}
          for _ in range(k)]


def _cell(group, mode, fid, pooled, dataset="mnist", seed=0, agents=None):
  r = _run(group, mode, dataset=dataset, fid=fid, seed=seed)
  r["final"]["agents"] = agents or _agents()
  r["final"]["pooled"] = {"fid": pooled}
  return r


def _tuned_runs(dif=(10.5, 9.0), cen=(10.0, 9.0), non=(14.0, 12.0), own_check=0.95):
  only01 = [0.5, 0.45] + [0.05 / 8] * 8
  check01 = [own_check / 2] * 2 + [(1 - own_check) / 8] * 8
  runs = {}
  for ds in ("mnist", "fashion_mnist"):
    for seed in (0, 1):
      for mode, (f, p) in (("diffusion", dif), ("centralized", cen), ("noncooperative", non)):
        runs[f"{ds}/iid/{mode}/{seed}"] = _cell("homogeneous", mode, f, p, ds, seed)
      runs[f"{ds}/classes/diffusion/{seed}"] = _cell("noniid", "diffusion", 10, 10, ds, seed)
      runs[f"{ds}/classes/noncooperative/{seed}"] = _cell(
          "noniid", "noncooperative", 30, 20, ds, seed,
          agents=[{"fid": 30, "class_histogram": only01, "check_class_histogram": check01}])
  return runs


def _claims(runs):
  return reproduce.claims(runs, reproduce.summarize(runs))


def test_tuned_claims_hold_on_both_datasets_by_per_agent_and_pooled_fid():
  c = _claims(_tuned_runs())
  assert c["verdicts"]["homogeneous"] == {"holds": True, "missing": [],
                                          "per_dataset": {"mnist": True, "fashion_mnist": True}}
  assert c["verdicts"]["nonhomogeneous"]["holds"] is True
  h = c["per_dataset"]["mnist"]["homogeneous"]
  assert h["per_agent_mean"]["diffusion_over_centralized"] == pytest.approx(1.05)
  assert h["pooled"]["diffusion_over_centralized"] == pytest.approx(1.0)
  assert h["per_seed"]["diffusion"] == [10.5, 10.5] and h["seeds"] == 2


@pytest.mark.parametrize("runs, claim", [
    (dict(dif=(11.5, 9.0)), "homogeneous"),    # per-agent mean 15% worse than centralized
    (dict(dif=(10.5, 10.0)), "homogeneous"),   # pooled FID 11% worse than centralized
    (dict(non=(10.0, 12.0)), "homogeneous"),   # non-cooperative better than diffusion
    (dict(own_check=0.85), "nonhomogeneous"),  # agent 0 only 85% in its two classes by check
])
def test_tuned_claims_fail_on_each_bar(runs, claim):
  c = _claims(_tuned_runs(**runs))
  assert c["verdicts"][claim]["holds"] is False
  other = {"homogeneous": "nonhomogeneous", "nonhomogeneous": "homogeneous"}[claim]
  assert c["verdicts"][other]["holds"] is True


def test_nonhomogeneous_bar_fails_when_one_agent_misses_a_class_by_the_check_classifier():
  runs = _tuned_runs()
  runs["fashion_mnist/classes/diffusion/1"]["final"]["agents"] = _agents(
      check=[0.04] + [0.96 / 9] * 9)
  c = _claims(runs)["per_dataset"]["fashion_mnist"]["nonhomogeneous"]
  assert not c["holds"] and c["diffusion_min_class_share_per_seed"] == {0: 0.1, 1: 0.04}
  assert _claims(runs)["verdicts"]["nonhomogeneous"]["per_dataset"] == {
      "mnist": True, "fashion_mnist": False}


def test_figures_and_claims_table_from_synthetic_summaries(tmp_path):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  png = str(tmp_path / "agent_0.png")
  plt.imsave(png, np.random.default_rng(0).random((280, 280)), cmap="gray")
  runs = _tuned_runs()
  for r in runs.values():
    r["samples"] = png
    base = {"noncooperative": 60.0, "centralized": 40.0, "diffusion": 42.0}[r["mode"]]
    r["parameters_sent_per_iteration"] = 5.5e6 if r["mode"] == "diffusion" else 0
    its = list(range(270, 2701, 270))
    r["fid_curve_agents"] = [(t, [base * 2700 / t + k + r["seed"] for k in range(5)]) for t in its]
    r["fid_curve"] = [(t, np.mean(f), min(f), max(f)) for t, f in r["fid_curve_agents"]]
    r["fid_curve_pooled"] = [(t, 0.9 * np.mean(f)) for t, f in r["fid_curve_agents"]]
  runs.update(_sweep())
  summary = reproduce.summarize(runs)
  results = {"runs": runs, "summary": summary, "claims": reproduce.claims(runs, summary)}
  names = reproduce.figures(results, str(tmp_path))
  assert {"fig3_mnist.png", "fig3_fashion_mnist.png", "fig45_mnist.png", "fig6_mnist.png",
          "fig6_fashion_mnist.png", "communication.png", "theorem1.png"} <= set(names)
  for name in names:
    assert os.path.getsize(tmp_path / name) > 5000
  text = reproduce.markdown(results)
  assert text.startswith("| claim | dataset | bar |")
  assert "| (i) homogeneous | mnist | diffusion FID <= 1.1 x centralized" in text
  assert "Over both datasets: homogeneous **holds**, nonhomogeneous **holds**" in text
  assert ("slopes in log mu: grid 2.00, ring 2.00; growing with lambda_2: mu 0.025 yes, "
          "mu 0.05 yes, mu 0.1 yes | 1 | **holds** |") in text


@pytest.mark.e2e
def test_two_tuned_cells_train_summarize_report_and_a_new_session_skips_them(tmp_path):
  """A two-cell tiny version of the tuned grid really trains (run -> summaries -> report); a
  session without the run directories skips both cells from their summaries, and
  bin/reproduce --report_only rebuilds results.json and the figures from the summaries alone."""
  summaries, lines = str(tmp_path / "docs"), []
  only = ["mnist/iid/diffusion/seed0", "mnist/iid/noncooperative/seed0"]
  first = reproduce.run_grid(_tuned(), str(tmp_path / "a"), quick=True, only=only,
                             summaries_dir=summaries, log=lines.append)
  assert sorted(first["runs"]) == sorted(only) and sorted(first["seconds_this_invocation"]) == only
  for name in only:
    cell = os.path.join(summaries, "tuned_quick", name)
    record = json.load(open(os.path.join(cell, "summary.json")))
    assert record["n_d"] == 1 and len(record["final"]["agents"]) == 2
    assert record["final"]["pooled"]["fid"] > 0 and len(record["fid_curve_pooled"]) == 2
    assert all(len(fids) == 2 for _, fids in record["fid_curve_agents"])
    assert os.path.getsize(os.path.join(cell, "agent_0.png")) > 1000
  shutil.rmtree(tmp_path / "a")  # another session: only the summaries are left
  del lines[:]
  again = reproduce.run_grid(_tuned(), str(tmp_path / "b"), quick=True, only=only,
                             summaries_dir=summaries, log=lines.append)
  assert again["seconds_this_invocation"] == {} and sum("summarized in" in l for l in lines) == 2
  assert json.dumps(again["summary"]) == json.dumps(first["summary"])
  out = str(tmp_path / "c")
  r = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "reproduce"), "--quick",
                      f"--config={os.path.join(ROOT, 'configs', 'reproduce_tuned.py')}",
                      f"--results_dir={out}", f"--summaries_dir={summaries}", "--report_only"],
                     capture_output=True, text=True, cwd=ROOT, timeout=300,
                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert r.returncode == 0, r.stderr[-3000:]
  results = json.load(open(os.path.join(out, "results.json")))
  assert sorted(results["runs"]) == sorted(only) and results["seconds_this_invocation"] == {}
  assert not os.path.exists(os.path.join(out, "runs"))
  for name in results["figures"]:
    assert os.path.getsize(os.path.join(out, name)) > 1000
