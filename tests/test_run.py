"""The run's parts: a cluster whose replica ids are not its task indices is refused, an agent
offline in a whole phase logs its loss as missing (not 0), and non-chief workers wait out the
chief's evaluation whatever train.collective_timeout says."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, tiny_config
from tfdiffgan import run as run_lib
from tfdiffgan.errors import PlacementError
from tfdiffgan.run import build
from tfdiffgan.run import records
from tfdiffgan.run import sync as sync_lib


def test_a_worker_whose_replica_is_not_its_task_index_is_refused():
  cluster = build.Cluster(tf.distribute.get_strategy(), num_workers=2, worker=1)  # replica 0
  with pytest.raises(PlacementError, match="worker 1 .* runs replica 0 of 1"):
    build.check_replica_id(cluster)
  build.check_replica_id(build.Cluster(tf.distribute.get_strategy(), 2, 0))


def test_disagreement_from_per_worker_scatters_about_a_float32_centroid_is_the_direct_one():
  """The sync point's disagreement (each worker's scatter about the all-reduced centroid, sent
  as float32) equals (1/K) sum_k ||w_k - w_c||^2 over all agents, to float64 precision: the
  centroid's rounding adds only K ||e||^2. A centre off by more than rounding is visible."""
  W = 0.05 + np.random.default_rng(0).normal(scale=1e-4, size=(6, 1000))
  direct = np.mean(np.sum((W - W.mean(axis=0)) ** 2, axis=1))
  centre = W.sum(axis=0).astype(np.float32).astype(np.float64) / 6
  shares = [sync_lib.scatter_about(W[w * 2:(w + 1) * 2], centre) for w in range(3)]
  assert sum(shares) / 6 == pytest.approx(direct, rel=1e-9)
  assert sync_lib.scatter_about(W, W.mean(axis=0) + 1e-5) / 6 != pytest.approx(direct, rel=1e-3)


@pytest.mark.e2e
def test_an_agent_offline_for_a_whole_phase_logs_its_loss_as_missing(tmp_path, idx_dir):
  c = tiny_config(idx_dir, **{"train.iterations": 6, "train.n_d": 1,
                              "topology.agent_dropout": 0.4})
  r = run_lib.Run(c, str(tmp_path / "run"))
  r.train()
  rows = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
  missing = 0
  for row in rows:
    has_d, has_g = records.present_agents(r.network.schedule.active(row["iteration"] - 1), 1, 2)
    for loss, has in ((row["d_loss"], has_d), (row["g_loss"], has_g)):
      assert [v is not None for v in loss] == has.tolist(), row
      assert all(v is None or np.isfinite(v) and v != 0 for v in loss), row
      missing += int((~has).sum())
  assert missing > 0  # the seed drops someone in 6 iterations x 2 agents


@pytest.mark.e2e
def test_workers_wait_out_the_chiefs_evaluation_past_the_collective_timeout(tmp_path):
  """The chief scores 10,000 samples per agent at iteration 1 (real MNIST, both classifiers),
  for longer than train.collective_timeout; the other worker waits at a barrier with no
  deadline instead of ending the run with a false "lost contact"."""
  from test_multiworker import _launch, _matrix_file, _train_flags  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  result = _launch(2, *_train_flags("", workdir, _matrix_file(tmp_path),
                                    "--config.train.strategy=multiworker",
                                    "--config.train.collective_timeout=4",
                                    "--config.eval.eval_every=1",
                                    "--config.eval.periodic_samples=10000"))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "lost contact" not in result.stdout + result.stderr
  evals = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [e["iteration"] for e in evals] == [1]
