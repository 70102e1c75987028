"""bin/train end to end, exact resume, and every bad input getting a clear error."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, tiny_config
from tfdiffgan import trainer
from tfdiffgan.config import ConfigError
from tfdiffgan.data import DataError
from tfdiffgan.topology import TopologyError


def _bin_train(workdir, *args):
  cmd = [sys.executable, os.path.join(ROOT, "bin", "train"),
         f"--config={os.path.join(ROOT, 'configs', 'mnist_noniid.py')}", f"--workdir={workdir}",
         *args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


TINY_FLAGS = ["--config.model.width=0.125", "--config.data.batch_size=16",
              "--config.train.iterations=3", "--config.train.n_d=2", "--config.train.log_every=1",
              "--config.train.checkpoint_every=2", "--config.train.sample_every=2",
              "--config.eval.eval_every=0", "--config.eval.final_samples=0"]


def test_bin_train_writes_everything_and_export_reloads(tmp_path, idx_dir):
  workdir = str(tmp_path / "run")
  result = _bin_train(workdir, f"--config.data.source_dir={idx_dir}", *TINY_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "iter 3/3" in result.stdout and "ETA" in result.stdout and "lambda_2=" in result.stdout
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["train"]["iterations"] == 3 and saved["model"]["width"] == 0.125
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-3")
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  record = json.load(open(os.path.join(workdir, "run.json")))
  assert 0 < record["lambda_2"] < 1 and record["iterations"] == 3
  for k in range(5):
    png = os.path.join(workdir, "samples", f"agent_{k}.png")
    assert tf.io.decode_png(tf.io.read_file(png)).shape == (280, 280, 1)
    assert os.path.exists(os.path.join(workdir, "export", f"agent_{k}", "saved_model.pb"))
  # the export reloads in a fresh process with the declared signature and range
  probe = ("import sys, tensorflow as tf, numpy as np;"
           "m = tf.saved_model.load(sys.argv[1]);"
           "x = m.serve(tf.random.normal([7, 100])).numpy();"
           "print(x.shape, x.dtype, float(x.min()) >= -1, float(x.max()) <= 1)")
  out = subprocess.run([sys.executable, "-c", probe, os.path.join(workdir, "export", "agent_4")],
                       capture_output=True, text=True, timeout=300)
  assert out.stdout.strip() == "(7, 28, 28, 1) float32 True True", out.stderr[-2000:]


def test_unknown_config_field_is_refused(tmp_path):
  result = _bin_train(str(tmp_path / "r"), "--config.train.bogus=1")
  assert result.returncode != 0 and "bogus" in result.stderr


def _weights(t):
  return [v.numpy() for m in t.step.generators + t.step.discriminators for v in m.weights]


def test_resume_equals_uninterrupted_run(tmp_path, idx_dir):
  straight = trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 4}), str(tmp_path / "a"))
  straight.run()
  first = trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 2}), str(tmp_path / "b"))
  first.run()
  resumed = trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 4}), str(tmp_path / "b"))
  assert int(resumed.iteration.numpy()) == 2
  resumed.run()
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  assert not np.allclose(_weights(first)[0], _weights(straight)[0])  # training did move weights


def test_resume_with_incompatible_config_is_refused(tmp_path, idx_dir):
  workdir = str(tmp_path / "run")
  trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 1}), workdir).run()
  with pytest.raises(ConfigError, match="model.width: saved 0.125, now 0.25"):
    trainer.Trainer(tiny_config(idx_dir, **{"model.width": 0.25}), workdir)


def test_warm_start_loads_weights_not_state(tmp_path, idx_dir):
  """train.init_from: a fresh run starts from another run's weights (Theorem 1 sweeps), with its
  own iteration count; a wrong path or a different width is refused with the fix named."""
  source = trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 2}), str(tmp_path / "src"))
  source.run()
  warm = trainer.Trainer(tiny_config(idx_dir, **{"train.init_from": str(tmp_path / "src"),
                                                 "topology.graph": "complete"}),
                         str(tmp_path / "warm"))
  assert int(warm.iteration.numpy()) == 0
  for a, b in zip(_weights(source), _weights(warm)):
    np.testing.assert_array_equal(a, b)
  cold = trainer.Trainer(tiny_config(idx_dir), str(tmp_path / "cold"))
  assert not np.allclose(_weights(cold)[0], _weights(source)[0])
  with pytest.raises(ConfigError, match="neither a workdir nor a checkpoint prefix"):
    trainer.Trainer(tiny_config(idx_dir, **{"train.init_from": str(tmp_path / "nope")}),
                    str(tmp_path / "x"))
  with pytest.raises(ConfigError, match="same num_agents, model.width"):
    trainer.Trainer(tiny_config(idx_dir, **{"train.init_from": str(tmp_path / "src"),
                                            "model.width": 0.25}), str(tmp_path / "y"))


def test_modes_build_the_right_network(tmp_path, idx_dir):
  t = trainer.Trainer(tiny_config(idx_dir, **{"train.mode": "centralized"}), str(tmp_path / "c"))
  assert t.K == 1 and t.batch_size == 16 and len(t.shards[0]) == 200
  t = trainer.Trainer(tiny_config(idx_dir, **{"train.mode": "noncooperative"}), str(tmp_path / "n"))
  assert t.K == 2 and not t.step.cooperative and t.lambda2 == pytest.approx(1.0)


@pytest.mark.parametrize("overrides,error,match", [
    ({"num_agents": 3, "data.partition": "classes"}, ConfigError, "data.classes lists 2 agents but num_agents=3"),
    ({"data.classes": [[0, 1], [11]], "data.partition": "classes"}, ValueError, "do not exist"),
    ({"topology.rule": "uniform", "topology.graph": "star", "num_agents": 3,
      "data.partition": "iid"}, TopologyError, "not doubly stochastic"),
    ({"data.source_dir": "/nonexistent/mnist"}, DataError, "does not exist"),
    ({"train.mode": "federated"}, ConfigError, "train.mode='federated' is not one of"),
    ({"train.n_d": 0}, ConfigError, "train.n_d=0 must be a positive integer"),
])
def test_bad_input_is_named(tmp_path, idx_dir, overrides, error, match):
  with pytest.raises(error, match=match):
    trainer.Trainer(tiny_config(idx_dir, **overrides), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "config.json")  # the fixed config can use it


def test_disconnected_graph_is_refused(tmp_path, idx_dir):
  edges = tmp_path / "edges.txt"
  edges.write_text("0 1\n2 3\n")
  c = tiny_config(idx_dir, **{"num_agents": 4, "data.partition": "iid", "topology.graph": "file",
                              "topology.edge_list": str(edges)})
  with pytest.raises(TopologyError, match="not connected"):
    trainer.Trainer(c, str(tmp_path / "run"))


def test_nan_losses_stop_the_run_and_keep_the_checkpoint(tmp_path, idx_dir):
  workdir = str(tmp_path / "run")
  trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 2}), workdir).run()
  t = trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 6}), workdir)
  t.step.discriminators[0].weights[0].assign(  # poison one agent's weights
      tf.fill(t.step.discriminators[0].weights[0].shape, float("nan")))
  with pytest.raises(trainer.TrainingError,
                     match=r"non-finite loss at iteration 3.*ckpt-2, weights finite\) is intact"
                     r".*lower --config.train.learning_rate \(now 0.05, e.g. 0.005\)") as e:
    t.run()
  assert "clip_norm=5" not in str(e.value)  # it is 5 already: the advice fits the config
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-2")
  again = trainer.Trainer(tiny_config(idx_dir, **{"train.iterations": 2}), workdir)
  assert np.isfinite(again.step.discriminators[0].weights[0].numpy()).all()


def test_periodic_and_final_evaluation_are_recorded(tmp_path):
  workdir = str(tmp_path / "run")
  c = tiny_config("", **{"eval.eval_every": 2, "eval.periodic_samples": 200,
                         "eval.final_samples": 300})
  record = trainer.Trainer(c, workdir).run()
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["iteration"] for l in lines] == [2, 3]
  assert len(lines[0]["agents"]) == 2 and lines[1]["num_samples"] == 300
  final = json.load(open(os.path.join(workdir, "metrics.json")))
  assert final["network"]["fid_mean"] == pytest.approx(record["metrics"]["fid_mean"])
  assert final["classifier"]["test_accuracy"] >= 0.985


def test_mirrored_strategy_matches_default(tmp_path, idx_dir):
  """Four agents over two logical CPU replicas (two agents each, phi all-gathered) compute the
  same weights as one replica holding all four."""
  flags = [f"--config.data.source_dir={idx_dir}", "--config.num_agents=4",
           "--config.data.partition=iid", "--config.topology.graph=ring", *TINY_FLAGS]
  runs = {}
  for name, extra in (("default", []), ("mirrored", ["--config.train.strategy=mirrored",
                                                      "--config.train.replicas=2"])):
    workdir = str(tmp_path / name)
    result = _bin_train(workdir, *flags, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    runs[name] = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
  names = [n for n in runs["default"].get_variable_to_shape_map()
           if n.startswith(("generators", "discriminators")) and "OPTIMIZER" not in n]
  assert len(names) > 20
  for n in names:
    np.testing.assert_allclose(runs["mirrored"].get_tensor(n), runs["default"].get_tensor(n),
                               atol=1e-5, err_msg=n)
  # the runs trained: agent weights moved away from each other's (different data and noise)
  k0 = [n for n in names if n.startswith("generators/0/") and n.endswith("1/_kernel/.ATTRIBUTES/VARIABLE_VALUE")][0]
  assert not np.allclose(runs["default"].get_tensor(k0),
                         runs["default"].get_tensor(k0.replace("generators/0/", "generators/1/")))


def test_mirrored_needs_replicas_dividing_agents(tmp_path, idx_dir):
  c = tiny_config(idx_dir, **{"train.strategy": "mirrored", "train.replicas": 3})
  with pytest.raises(ConfigError, match="divisor of num_agents=2"):
    trainer.Trainer(c, str(tmp_path / "run"))


def test_fusion_mode_averages_generators_and_counts_communication(tmp_path, idx_dir):
  # n_d = 2, n_g = 1: a period of 3 rounds makes every G round a network average
  c = tiny_config(idx_dir, **{"train.mode": "fusion", "topology.fusion_period": 3,
                              "train.iterations": 2})
  t = trainer.Trainer(c, str(tmp_path / "run"))
  record = t.run()
  g0, g1 = t.step.generators
  for a, b in zip(g0.weights, g1.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
  assert not np.allclose(t.step.discriminators[0].weights[0].numpy(),
                         t.step.discriminators[1].weights[0].numpy())
  g_params = sum(int(np.prod(v.shape)) for v in g0.trainable_variables)
  assert record["parameters_sent_per_iteration"] == pytest.approx(2 * 2 * g_params)


def test_gossip_mode_runs(tmp_path, idx_dir):
  c = tiny_config(idx_dir, **{"train.mode": "gossip", "train.iterations": 2})
  record = trainer.Trainer(c, str(tmp_path / "run")).run()
  assert record["parameters_sent_per_iteration"] > 0 and np.isfinite(record["final_d_loss"]).all()
