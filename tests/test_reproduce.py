"""bin/reproduce --quick: the grid runs, writes a well-formed results.json and every figure, and
a second invocation skips the completed cells."""

import json
import os
import subprocess
import sys

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
  for name in results["figures"]:
    assert os.path.getsize(os.path.join(out, name)) > 1000
  assert {"fig3_mnist.png", "fig45_mnist.png", "fig6_mnist.png", "theorem1.png",
          "communication.png"} <= set(results["figures"])
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
  assert again.returncode == 0 and again.stdout.count("complete, skipped") == len(runs)
