"""bin/reproduce --quick: the grid runs, writes a well-formed results.json and every figure, and
a second invocation skips the completed cells."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from tfdiffgan import reproduce


def test_classes_for_gives_agent_zero_the_zeros_and_ones():
  assert reproduce.classes_for(5) == [[0, 1], [2, 6], [3, 7], [4, 8], [5, 9]]
  assert reproduce.classes_for(2) == [[0, 1], list(range(2, 10))]


def test_quick_grid(tmp_path):
  out = str(tmp_path / "results")
  cmd = [sys.executable, os.path.join(ROOT, "bin", "reproduce"), f"--results_dir={out}", "--quick",
         f"--config={os.path.join(ROOT, 'configs', 'reproduce.py')}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1200, env=env)
  assert r.returncode == 0, r.stderr[-3000:]
  results = json.load(open(os.path.join(out, "results.json")))
  runs = results["runs"]
  modes = {v["mode"] for v in runs.values() if v["group"] == "homogeneous"}
  assert modes == {"noncooperative", "centralized", "diffusion", "fusion", "gossip"}
  assert {v["seed"] for v in runs.values()} == {0, 1}
  for key, v in results["summary"]["final"].items():
    assert v["seeds"] == 2 and v["fid_mean"] > 0 and len(v["agent0_histogram"]) == 10
  assert results["summary"]["final"]["mnist/iid/noncooperative"]["parameters_sent_per_iteration"] == 0
  assert results["summary"]["final"]["mnist/iid/diffusion"]["parameters_sent_per_iteration"] > 0
  assert set(results["summary"]["theorem1"]) == {"ring", "complete"}
  assert set(results["summary"]["theorem1_warm"]) == {"ring", "complete"}
  warm = [v for k, v in runs.items() if k.startswith("theorem1_warm/")]
  assert len(warm) == 4 and all(v["disagreement_curve"] for v in warm)
  for name in results["figures"]:
    assert os.path.getsize(os.path.join(out, name)) > 1000
  assert {"fig3_mnist.png", "fig45_mnist.png", "fig6_mnist.png", "theorem1.png",
          "theorem1_warm.png", "communication.png"} <= set(results["figures"])
  faults = results["summary"]["faults"]
  assert set(faults) == {"p0.0/q0.2", "p0.5/q0.2"}
  assert all(len(v[0]["fid_per_agent"]) == 2 for v in faults.values())
  assert results["claims"]["faults"] is None  # the claim needs q = 0 runs
  table = open(os.path.join(out, "results.md")).read()
  assert "| 0.5 | 0.2 |" in table
  assert "| mnist/iid/diffusion | 2 |" in table and "| ring |" in table
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
  # every cell is skipped: the runs in results.json and the warm-up they start from
  assert again.returncode == 0 and again.stdout.count("complete, skipped") == len(runs) + 1


def _run(group, mode, dataset="mnist", fid=10.0, hists=None, graph="paper5", mu=0.05, lam=0.5,
         dis=None):
  agents = [{"fid": fid, "kid": 0.0, "kid_se": 0.0, "coverage": 10, "class_histogram": h}
            for h in (hists or [[0.1] * 10])]
  return {"group": group, "mode": mode, "dataset": dataset, "partition": "classes" if group == "noniid" else "iid", "seed": 0,
          "graph": graph, "mu": mu, "lambda_2": lam, "train_seconds": 1.0,
          "parameters_sent_per_iteration": 0, "fid_curve": [],
          "disagreement_curve": [(i, d) for i, d in enumerate(dis or [])],
          "final": None if group == "theorem1" else {
              "network": {"fid_mean": fid, "kid_mean": 0.0, "coverage_mean": 10.0,
                          "coverage_min": 10}, "agents": agents}}


def test_claims_follow_the_numbers():
  """claims() reports what the runs say, both ways: a claim that holds and one that fails."""
  only01 = [0.5, 0.45] + [0.00625] * 8
  runs = {"a": _run("homogeneous", "centralized", fid=10.0),
          "b": _run("homogeneous", "diffusion", fid=10.5),
          "c": _run("homogeneous", "noncooperative", fid=14.0),
          "d": _run("noniid", "diffusion", hists=[[0.1] * 10, [0.04] + [0.96 / 9] * 9]),
          "e": _run("noniid", "noncooperative", hists=[only01])}
  for g, lam, scale in (("ring", 0.6, 2.0), ("grid", 0.5, 1.0), ("complete", 0.0, 1e-12)):
    for mu in (0.025, 0.05, 0.1):
      runs[f"{g}{mu}"] = _run("theorem1", "diffusion", graph=g, mu=mu, lam=lam,
                              dis=[scale * mu ** 2] * 4)
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


def test_markdown_table_lists_every_mode_and_graph():
  runs = {"a": _run("homogeneous", "centralized", fid=10.0),
          "b": _run("homogeneous", "diffusion", fid=10.5)}
  for g, lam in (("ring", 0.6), ("complete", 0.0)):
    for mu in (0.025, 0.05):
      runs[f"{g}{mu}"] = _run("theorem1", "diffusion", graph=g, mu=mu, lam=lam, dis=[mu] * 4)
  text = reproduce.markdown({"runs": runs, "summary": reproduce.summarize(runs)})
  assert "| mnist/iid/centralized | 1 | 10.00 |" in text and "| mnist/iid/diffusion | 1 | 10.50 |" in text
  assert "| ring | 0.600 | 2.25 | - |" in text and "| complete | 0.000 | 0.00 | - |" in text


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
  claim = lambda: reproduce.claims(runs, reproduce.summarize(runs))["per_dataset"]["mnist"][
      "nonhomogeneous"]
  assert claim()["holds"] and claim()["classifiers"] == "main and check"
  runs["d"]["final"]["agents"][1]["check_class_histogram"] = [0.03] + [0.97 / 9] * 9
  assert not claim()["holds"]
  assert claim()["diffusion_min_class_share_over_agents_and_seeds"] == pytest.approx(0.03)
  assert claim()["diffusion_agents_at_least_5pct_each_class"] == 1
