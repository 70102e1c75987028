"""bin/train end to end, exact resume, and every bad input getting a clear error."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, make_idx_dir, tiny_config
from tfdiffgan import models
from tfdiffgan import topology
from tfdiffgan import run as run_lib
from tfdiffgan import schedule as schedule_lib
from tfdiffgan.run import sync as sync_lib
from tfdiffgan import workdir as workdir_lib
from tfdiffgan.config import ConfigError
from tfdiffgan.data import DataError
from tfdiffgan.topology import TopologyError

pytestmark = pytest.mark.e2e


def _bin_train(workdir, *args):
  cmd = [sys.executable, os.path.join(ROOT, "bin", "train"),
         f"--config={os.path.join(ROOT, 'configs', 'mnist_noniid.py')}", f"--workdir={workdir}",
         *args]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


TINY_FLAGS = ["--config.model.width=0.125", "--config.model.d_width=0",
              "--config.data.batch_size=16",
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
  return [v.numpy() for m in t.step.generators + t.step.discriminators + t.step.ema_generators
          for v in m.weights]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """One tiny run trained for 2 iterations (ckpt-2), trained once for the tests that start from
  a finished run; each works on its own copy."""
  idx = str(tmp_path_factory.mktemp("idx"))
  make_idx_dir(idx)
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  run_lib.train_and_evaluate(tiny_config(idx, **{"train.iterations": 2}), workdir)
  return idx, workdir


def _copy_of(finished_run, target):
  idx, workdir = finished_run
  shutil.copytree(workdir, str(target))
  return idx, str(target)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_equals_uninterrupted_run(tmp_path, idx_dir, ema_decay):
  cfg = lambda n: tiny_config(idx_dir, **{"train.iterations": n, "train.ema_decay": ema_decay})
  straight = run_lib.Run(cfg(4), str(tmp_path / "a"))
  straight.train()
  first = run_lib.Run(cfg(2), str(tmp_path / "b"))
  first.train()
  resumed = run_lib.Run(cfg(4), str(tmp_path / "b"))
  assert int(resumed.checkpoints.iteration.numpy()) == 2
  resumed.train()
  assert len(_weights(resumed)) == len(_weights(straight)) > (60 if ema_decay else 30)
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  assert not np.allclose(_weights(first)[0], _weights(straight)[0])  # training did move weights
  if ema_decay:  # the average is its own state, restored too: it lags the iterate
    assert not np.allclose(straight.step.ema_generators[0].weights[0].numpy(),
                           straight.step.generators[0].weights[0].numpy())


def test_resume_with_incompatible_config_is_refused(tmp_path, finished_run):
  idx_dir, workdir = _copy_of(finished_run, tmp_path / "run")
  with pytest.raises(ConfigError, match="model.width: saved 0.125, now 0.25"):
    run_lib.Run(tiny_config(idx_dir, **{"model.width": 0.25}), workdir)


def test_warm_start_loads_weights_not_state(tmp_path, finished_run):
  """train.init_from: a fresh run starts from another run's weights (Theorem 1 sweeps), with its
  own iteration count; a wrong path or a different width is refused with the fix named."""
  idx_dir, _ = _copy_of(finished_run, tmp_path / "src")
  source = run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 2}), str(tmp_path / "src"))
  assert int(source.checkpoints.iteration.numpy()) == 2   # restored, trained
  warm = run_lib.Run(tiny_config(idx_dir, **{"train.init_from": str(tmp_path / "src"),
                                                 "topology.graph": "complete"}),
                         str(tmp_path / "warm"))
  assert int(warm.checkpoints.iteration.numpy()) == 0
  for a, b in zip(_weights(source), _weights(warm)):
    np.testing.assert_array_equal(a, b)
  cold = run_lib.Run(tiny_config(idx_dir), str(tmp_path / "cold"))
  assert not np.allclose(_weights(cold)[0], _weights(source)[0])
  with pytest.raises(ConfigError, match="neither a workdir nor a checkpoint prefix"):
    run_lib.Run(tiny_config(idx_dir, **{"train.init_from": str(tmp_path / "nope")}),
                    str(tmp_path / "x"))
  with pytest.raises(ConfigError, match="same num_agents, model.width"):
    run_lib.Run(tiny_config(idx_dir, **{"train.init_from": str(tmp_path / "src"),
                                            "model.width": 0.25}), str(tmp_path / "y"))


def test_modes_build_the_right_network(tmp_path, idx_dir, capsys):
  t = run_lib.Run(tiny_config(idx_dir, **{"train.mode": "centralized"}), str(tmp_path / "c"))
  assert t.network.K == 1 and t.network.batch_size == 16 and len(t.network.shards[0]) == 200
  capsys.readouterr()
  t.records.describe()
  present = (np.array([True]), np.array([True]))
  t.records.progress(1, 2, (np.array([1.0]), np.array([0.5])), present,
                     sync_lib.Status(False, [], 0.0, 0.0), 1.0, 0.0)
  out = capsys.readouterr().out  # one pooled GAN: no per-agent shards, graph or disagreement
  assert "one GAN on the union of 2 shards (200 images, batch 16)" in out
  assert "agent 0:" not in out and "lambda_2" not in out and "disagreement" not in out
  assert "iter 1/2 | D 1.000 G 0.500 | 1.00 it/s" in out
  t = run_lib.Run(tiny_config(idx_dir, **{"train.mode": "noncooperative"}), str(tmp_path / "n"))
  assert t.network.K == 2 and not t.step.cooperative and t.network.lambda2 == pytest.approx(1.0)


@pytest.mark.parametrize("overrides,error,match", [
    ({"num_agents": 3, "data.partition": "classes"}, ConfigError, "data.classes lists 2 agents but num_agents=3"),
    ({"data.classes": [[0, 1], [11]], "data.partition": "classes"}, ValueError, "do not exist"),
    ({"topology.rule": "uniform", "topology.graph": "star", "num_agents": 3,
      "data.partition": "iid"}, TopologyError, "not doubly stochastic"),
    ({"data.source_dir": "/nonexistent/mnist"}, DataError, "does not exist"),
    ({"train.mode": "federated"}, ConfigError, "train.mode='federated' is not one of"),
    ({"train.n_d": 0}, ConfigError, "train.n_d=0 must be a positive integer"),
    # refused at start-up, before anything is written: the corrected rerun is not refused
    ({"data.batch_size": 100000}, ConfigError,
     r"agent\(s\) \[0, 1\] hold \[100, 100\] images, fewer than data.batch_size=100000"),
    ({"data.partition": "dirichlet", "data.dirichlet_alpha": 1e-3, "num_agents": 5}, ConfigError,
     r"agent\(s\) \[0, 2\] hold \[0, 0\] images, fewer than data.batch_size=8"),
    ({"data.partition": "dirichlet", "data.dirichlet_alpha": float("nan")}, ConfigError,
     "data.dirichlet_alpha=nan is not a finite number"),
    ({"train.learning_rate": float("nan")}, ConfigError, "train.learning_rate=nan is not a finite"),
    ({"model.width": float("nan")}, ConfigError, "model.width=nan is not a finite number"),
    ({"train.learning_rate": 0.0}, ConfigError, "learning_rate=0 means no agent ever learns"),
    ({"data.classes": [0, 1], "data.partition": "classes"}, ConfigError,
     r"data.classes=\[0, 1\] must be a list of lists of class ids, one list per agent"),
    ({"topology.link_failure": 1.0}, TopologyError, r"link_failure=1.0 must be a probability"),
    ({"train.mode": "fusion", "topology.link_failure": 0.2}, TopologyError,
     "train.mode=fusion has no links"),
    ({"train.ema_decay": 1.0}, ConfigError, r"train.ema_decay=1.0 must be in \[0, 1\)"),
    ({"train.lr_decay": -0.5}, ConfigError, r"train.lr_decay=-0.5 must be in \[0, 1\)"),
    ({"model.d_width": -0.5}, ConfigError, r"model.d_width=-0.5 must be a non-negative number"),
    ({"model.pack": 3}, ConfigError, r"model.pack=3 must divide data.batch_size=8"),
    ({"model.pack": 0}, ConfigError, r"model.pack=0 must be a positive integer"),
])
def test_bad_input_is_named(tmp_path, idx_dir, overrides, error, match):
  with pytest.raises(error, match=match):
    run_lib.Run(tiny_config(idx_dir, **overrides), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "config.json")  # the fixed config can use it


@pytest.mark.parametrize("d_width, std, pack, filters",
                         [(0.0, False, 1, [8, 16]), (0.5, True, 2, [32, 64])])
def test_discriminator_follows_d_width_minibatch_std_and_pack(tmp_path, idx_dir, d_width, std,
                                                              pack, filters):
  """model.d_width widens every agent's D alone (0: model.width); G keeps model.width;
  model.minibatch_std adds the batch-variety feature to every D; model.pack makes every D score
  that many images at once."""
  t = run_lib.Run(tiny_config(idx_dir, **{"model.d_width": d_width, "model.pack": pack,
                                              "model.minibatch_std": std}), str(tmp_path / "run"))
  for d, g in zip(t.step.discriminators, t.step.generators):
    assert [l.filters for l in d.layers if hasattr(l, "filters")] == filters
    assert any(isinstance(l, models.MinibatchStddev) for l in d.layers) == std
    assert d(tf.zeros([8, 28, 28, 1])).shape == (8 // pack, 1)
    assert [l.filters for l in g.layers if hasattr(l, "filters")] == [16, 8, 1]


def test_disconnected_graph_is_refused(tmp_path, idx_dir):
  edges = tmp_path / "edges.txt"
  edges.write_text("0 1\n2 3\n")
  c = tiny_config(idx_dir, **{"num_agents": 4, "data.partition": "iid", "topology.graph": "file",
                              "topology.edge_list": str(edges)})
  with pytest.raises(TopologyError, match="not connected"):
    run_lib.Run(c, str(tmp_path / "run"))


def test_nan_losses_stop_the_run_and_keep_the_checkpoint(tmp_path, finished_run):
  idx_dir, workdir = _copy_of(finished_run, tmp_path / "run")
  t = run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 6}), workdir)
  t.step.discriminators[0].weights[0].assign(  # poison one agent's weights
      tf.fill(t.step.discriminators[0].weights[0].shape, float("nan")))
  with pytest.raises(run_lib.TrainingError,
                     match=r"non-finite loss at iteration 3.*ckpt-2, weights finite\) is intact"
                     r".*Lower --config.train.learning_rate \(now 0.05, e.g. 0.005\)") as e:
    t.train()
  assert "clip_norm=5" not in str(e.value)  # it is 5 already: the advice fits the config
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-2")
  again = run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 2}), workdir)
  assert np.isfinite(again.step.discriminators[0].weights[0].numpy()).all()


def test_periodic_and_final_evaluation_are_recorded(tmp_path):
  """Periodic passes score the averaged generators; the final one the iterates too; both
  classifiers read every sample, and robust coverage is their intersection."""
  workdir = str(tmp_path / "run")
  c = tiny_config("", **{"eval.eval_every": 2, "eval.periodic_samples": 200,
                         "eval.final_samples": 300, "train.ema_decay": 0.5})
  record = run_lib.Run(c, workdir).train()
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["iteration"] for l in lines] == [2, 3]
  assert len(lines[0]["agents"]) == 2 and lines[1]["num_samples"] == 300
  assert "raw" not in lines[0] and lines[0]["generator"] == "averaged"
  final = json.load(open(os.path.join(workdir, "metrics.json")))
  assert final["network"]["fid_mean"] == pytest.approx(record["metrics"]["fid_mean"])
  assert final["classifier"]["test_accuracy"] >= 0.985
  assert final["classifier"]["check"]["test_accuracy"] >= 0.985
  raw = final["raw"]["agents"]
  assert len(raw) == 2 and raw[0]["fid"] != final["agents"][0]["fid"]
  # every evaluation also scores the agents' samples pooled, an equal share each
  assert [l["pooled"]["samples_per_agent"] for l in lines] == [100, 150]
  assert final["pooled"]["num_samples"] == 300 and len(final["pooled"]["check_class_histogram"]) == 10
  for m in final["agents"]:
    both = np.minimum(m["class_histogram"], m["check_class_histogram"])
    assert m["robust_coverage"] == int(np.sum(both >= 0.05)) <= min(m["coverage"],
                                                                     m["check_coverage"])
    assert m["robust_weakest_class_share"] == pytest.approx(both.min(), abs=1e-4)


def _config_of_flags(*flags_):
  """The config bin/train builds from configs/mnist_noniid.py and --config.FIELD=VALUE flags, for
  a reference run in this process (no TensorFlow import of its own)."""
  from tfdiffgan import cli  # pylint: disable=g-import-not-at-top
  config = cli.load_config_file(os.path.join(ROOT, "configs", "mnist_noniid.py"))
  for flag in flags_:
    name, value = flag[len("--config."):].split("=", 1)
    node, parts = config, name.split(".")
    for part in parts[:-1]:
      node = node[part]
    node[parts[-1]] = type(node[parts[-1]])(value)
  return config


@pytest.mark.parametrize("faults", [[], ["--config.topology.link_failure=0.3",
                                          "--config.topology.agent_dropout=0.2"]])
def test_mirrored_strategy_matches_default(tmp_path, idx_dir, faults):
  """Four agents over two logical CPU replicas (two agents each, phi all-gathered) compute the
  same weights as one replica holding all four, also with links failing and agents offline."""
  flags = [f"--config.data.source_dir={idx_dir}", "--config.num_agents=4",
           "--config.data.partition=iid", "--config.topology.graph=ring", *TINY_FLAGS, *faults]
  # the one-replica run in this process; the mirrored one needs its own (logical devices are set
  # before TensorFlow starts)
  run_lib.train_and_evaluate(_config_of_flags(*flags), str(tmp_path / "default"))
  result = _bin_train(str(tmp_path / "mirrored"), *flags, "--config.train.strategy=mirrored",
                      "--config.train.replicas=2")
  assert result.returncode == 0, result.stderr[-3000:]
  runs = {name: tf.train.load_checkpoint(str(tmp_path / name / "checkpoints"))
          for name in ("default", "mirrored")}
  names = [n for n in runs["default"].get_variable_to_shape_map()
           if n.startswith(("generators", "discriminators")) and "OPTIMIZER" not in n]
  assert len(names) > 20
  for n in names:
    np.testing.assert_allclose(runs["mirrored"].get_tensor(n), runs["default"].get_tensor(n),
                               atol=1e-5, err_msg=n)
  # the runs trained: agent weights moved away from each other's (different data and noise)
  k0 = [n for n in names if n.startswith("generators/agent_0/") and n.endswith("1/_kernel/.ATTRIBUTES/VARIABLE_VALUE")][0]
  assert not np.allclose(runs["default"].get_tensor(k0),
                         runs["default"].get_tensor(k0.replace("generators/agent_0/", "generators/agent_1/")))


def test_mirrored_needs_replicas_dividing_agents(tmp_path, idx_dir):
  c = tiny_config(idx_dir, **{"train.strategy": "mirrored", "train.replicas": 3})
  with pytest.raises(ConfigError, match="divisor of num_agents=2"):
    run_lib.Run(c, str(tmp_path / "run"))


def test_fusion_mode_averages_both_networks_and_counts_communication(tmp_path, idx_dir):
  """FedGAN's synchronisation every iteration (fusion_period=1): after it, every agent holds
  the same D and the same G; each sync sends K uploads + K downloads of D and of G."""
  c = tiny_config(idx_dir, **{"train.mode": "fusion", "topology.fusion_period": 1,
                              "train.iterations": 2})
  t = run_lib.Run(c, str(tmp_path / "run"))
  record = t.train()
  (g0, g1), (d0, d1) = t.step.generators, t.step.discriminators
  for a, b in zip(g0.weights + d0.weights, g1.weights + d1.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
  count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
  assert record["parameters_sent_per_iteration"] == pytest.approx(2 * 2 * (count(g0) + count(d0)))


def test_gossip_mode_runs(tmp_path, idx_dir):
  c = tiny_config(idx_dir, **{"train.mode": "gossip", "train.iterations": 2})
  record = run_lib.Run(c, str(tmp_path / "run")).train()
  assert record["parameters_sent_per_iteration"] > 0 and np.isfinite(record["final_d_loss"]).all()


def _checkpoint_tensors(workdir, prefix=None):
  prefix = prefix or tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  reader = tf.train.load_checkpoint(prefix)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n.startswith(("generators", "discriminators", "d_optimizers", "g_optimizers", "noise",
                           "iteration"))}


def test_no_checkpoint_of_non_finite_weights(tmp_path, finished_run):
  """Weights can turn NaN while the losses stay finite (here a generator's BatchNorm moving
  mean, which training-mode losses never read): the first iteration that logs (every one here)
  refuses to go on, nothing more is saved, the last finite checkpoint is named and kept."""
  idx_dir, workdir = _copy_of(finished_run, tmp_path / "run")
  t = run_lib.Run(tiny_config(idx_dir, **{"train.iterations": 6}), workdir)
  moving_mean = [v for v in t.step.generators[0].non_trainable_variables
                 if "moving_mean" in v.path][0]
  moving_mean.assign(tf.fill(moving_mean.shape, float("nan")))
  with pytest.raises(run_lib.TrainingError, match=r"non-finite weights at iteration 3 for "
                     r"agent\(s\) \[0(, 1)?\]\. Nothing more was saved; the last checkpoint "
                     r"\(ckpt-2, weights finite\) is intact\."):
    t.train()
  ckpts = tf.train.get_checkpoint_state(os.path.join(workdir, "checkpoints"))
  assert ckpts.model_checkpoint_path.endswith("ckpt-2")
  for prefix in ckpts.all_model_checkpoint_paths:
    for name, value in _checkpoint_tensors(workdir, prefix).items():
      assert np.isfinite(value).all(), (prefix, name)


def test_divergence_advice_fits_the_config(tmp_path, idx_dir):
  """mu = 1e6 diverges at once: clip_norm is already 5, so the advice is a lower step size."""
  c = tiny_config(idx_dir, **{"train.learning_rate": 1e6, "train.checkpoint_every": 1,
                              "train.iterations": 20})
  with pytest.raises(run_lib.TrainingError, match=r"No checkpoint had been written yet\. Lower "
                     r"--config.train.learning_rate \(now 1e\+06, e.g. 100000\)") as e:
    run_lib.train_and_evaluate(c, str(tmp_path / "run"))
  assert "clip_norm=5" not in str(e.value)
  c.train.clip_norm = 0.0
  with pytest.raises(run_lib.TrainingError, match=r"Clip the gradients "
                     r"\(--config.train.clip_norm=5\), or lower"):
    run_lib.train_and_evaluate(c, str(tmp_path / "run0"))


def test_failed_start_leaves_the_workdir_to_the_corrected_run(tmp_path, idx_dir):
  """A config.json and log rows left in a workdir without any checkpoint (a start that failed
  before its first save) do not refuse a different, corrected config, which trains from 1."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(tiny_config(idx_dir, **{"data.batch_size": 100000}).to_json())
  (workdir / "log.jsonl").write_text(json.dumps({"iteration": 1}) + "\n")
  record = run_lib.train_and_evaluate(tiny_config(idx_dir), str(workdir))
  assert record["iterations"] == 3
  assert [json.loads(l)["iteration"] for l in open(workdir / "log.jsonl")] == [1, 2, 3]


def _files(workdir):
  out = {}
  for root, _, names in os.walk(workdir):
    for n in names:
      p = os.path.join(root, n)
      out[os.path.relpath(p, workdir)] = open(p, "rb").read()
  return out


def test_resume_after_a_kill_keeps_records_whole_and_a_finished_rerun_changes_nothing(
    tmp_path, idx_dir):
  """Killed after iteration 3 with its checkpoint at 2, the resumed run writes
  iteration 3 once, adds its time to the first session's, and counts messages over the whole run;
  rerunning the finished run leaves every file as it was."""
  straight = run_lib.train_and_evaluate(tiny_config(idx_dir, **{"train.iterations": 5}),
                                        str(tmp_path / "a"))
  workdir = str(tmp_path / "b")
  first = run_lib.train_and_evaluate(tiny_config(idx_dir), workdir)   # 3 iterations, ckpt-2, ckpt-3
  ckpt_dir = os.path.join(workdir, "checkpoints")
  for name in os.listdir(ckpt_dir):                                  # as if killed before ckpt-3
    if name.startswith("ckpt-3"):
      os.remove(os.path.join(ckpt_dir, name))
  with open(os.path.join(ckpt_dir, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
  os.remove(os.path.join(workdir, "run.json"))
  record = run_lib.train_and_evaluate(tiny_config(idx_dir, **{"train.iterations": 5}), workdir)
  rows = [json.loads(l)["iteration"] for l in open(os.path.join(workdir, "log.jsonl"))]
  assert rows == [1, 2, 3, 4, 5]
  assert record["train_seconds"] > workdir_lib.session_seconds(ckpt_dir, 2) > 0
  assert record["parameters_sent_per_iteration"] == straight["parameters_sent_per_iteration"] > 0
  assert first["parameters_sent_per_iteration"] == straight["parameters_sent_per_iteration"]
  before = _files(workdir)
  again = run_lib.train_and_evaluate(tiny_config(idx_dir, **{"train.iterations": 5}), workdir)
  assert again == record and _files(workdir) == before


def test_full_disk_at_a_checkpoint_keeps_the_last_one(tmp_path, idx_dir, monkeypatch):
  """No space left while writing ckpt-4: one message naming the path and the intact ckpt-2; the
  half-written ckpt-4_temp/ is removed and a rerun resumes from ckpt-2."""
  workdir = str(tmp_path / "run")
  c = tiny_config(idx_dir, **{"train.iterations": 4})
  t = run_lib.Run(c, workdir)
  real_save = t.checkpoints.manager.save

  def full_disk(checkpoint_number=None):
    if checkpoint_number == 4:
      os.makedirs(os.path.join(t.checkpoints.manager.directory, "ckpt-4_temp"))
      open(os.path.join(t.checkpoints.manager.directory, "ckpt-4_temp", "part-00000-of-00001"), "w").close()
      raise tf.errors.ResourceExhaustedError(
          None, None, f"{t.checkpoints.manager.directory}/ckpt-4_temp/part-00000-of-00001; No space left on "
          "device")
    return real_save(checkpoint_number=checkpoint_number)

  monkeypatch.setattr(t.checkpoints.manager, "save", full_disk)
  with pytest.raises(workdir_lib.WorkdirError, match=r"cannot write checkpoint ckpt-4 in .*"
                     r"checkpoints: .*No space left on device\. The last checkpoint \(ckpt-2\) is "
                     r"intact; free disk space"):
    t.train()
  assert not os.path.exists(os.path.join(t.checkpoints.manager.directory, "ckpt-4_temp"))
  assert tf.train.latest_checkpoint(t.checkpoints.manager.directory).endswith("ckpt-2")
  again = run_lib.Run(c, workdir)
  assert int(again.checkpoints.iteration.numpy()) == 2
  assert again.train()["iterations"] == 4


def test_evaluate_on_a_workdir_writes_nothing_into_it(tmp_path, finished_run):
  """bin/evaluate --workdir without exports builds the agents from the checkpoint, read-only:
  no config.json rewrite, no new event file."""
  from tfdiffgan import evaluate  # pylint: disable=g-import-not-at-top
  _, workdir = _copy_of(finished_run, tmp_path / "run")
  shutil.rmtree(os.path.join(workdir, "export"))
  before = {p: os.stat(os.path.join(workdir, p)).st_mtime_ns for p in _files(workdir)}
  _, gens = evaluate.workdir_generators(workdir)
  assert len(gens) == 2
  assert {p: os.stat(os.path.join(workdir, p)).st_mtime_ns for p in _files(workdir)} == before


def test_link_failures_and_dropouts_train_and_count_surviving_links(tmp_path, idx_dir):
  """diffusion and gossip with faults: every agent finite, fewer parameters sent than without,
  and p = q = 0 builds exactly the fault-free schedule."""
  base = dict(**{"num_agents": 4, "data.partition": "iid", "topology.graph": "ring",
                 "train.iterations": 2})
  for mode in ("diffusion", "gossip"):
    clean = run_lib.Run(tiny_config(idx_dir, **base, **{"train.mode": mode}),
                            str(tmp_path / f"{mode}0"))
    assert not isinstance(clean.network.schedule, schedule_lib.FaultySchedule)
    faulty = run_lib.Run(tiny_config(idx_dir, **base, **{
        "train.mode": mode, "topology.link_failure": 0.5, "topology.agent_dropout": 0.3}),
        str(tmp_path / f"{mode}1"))
    record = faulty.train()
    assert np.isfinite(record["final_d_loss"]).all() and np.isfinite(record["final_g_loss"]).all()
    assert 0 < faulty.network.lambda2 < 1
    sent_clean = sum(clean.network.schedule.messages(i) @ clean.network.params_per_round for i in range(2)) / 2
    assert 0 < record["parameters_sent_per_iteration"] < sent_clean


KILL_FLAGS = [f for f in TINY_FLAGS if not f.startswith(("--config.train.iterations",
                                                          "--config.train.checkpoint_every"))] + [
    "--config.train.iterations=40", "--config.train.checkpoint_every=10",
    "--config.num_agents=2", "--config.topology.graph=ring", "--config.data.partition=iid"]


def _start_bin_train(workdir, *args):
  cmd = [sys.executable, os.path.join(ROOT, "bin", "train"),
         f"--config={os.path.join(ROOT, 'configs', 'mnist_noniid.py')}", f"--workdir={workdir}",
         *args]
  return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def _wait_for(proc, text):
  for line in proc.stdout:
    if text in line:
      return True
  return False


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  idx = str(tmp_path_factory.mktemp("idx"))
  make_idx_dir(idx)
  workdir = str(tmp_path_factory.mktemp("straight") / "run")
  result = _bin_train(workdir, f"--config.data.source_dir={idx}", *KILL_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  return idx, _checkpoint_tensors(workdir)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_stopped_run_resumes_bit_identical(tmp_path, uninterrupted, how):
  """A real bin/train stopped between checkpoints (SIGKILL: nothing more saved; SIGINT: a clean
  stop that saves a checkpoint where it is and names it), then rerun: the final weights, optimizer
  and noise states equal an uninterrupted run's bit for bit, and no log row appears twice. While
  the first runs, a second run on the same workdir is refused, naming the first's pid."""
  idx, expected = uninterrupted
  workdir = str(tmp_path / "run")
  flags_ = [f"--config.data.source_dir={idx}", *KILL_FLAGS]
  proc = _start_bin_train(workdir, *flags_)
  try:
    assert _wait_for(proc, "iter 13/40")
    if how == "SIGKILL":
      c = tiny_config(idx)
      with pytest.raises(workdir_lib.WorkdirError, match=rf"in use by a running training "
                         rf"\(pid {proc.pid} "):
        run_lib.train_and_evaluate(c, workdir)
    os.kill(proc.pid, getattr(signal, how))
    out, err = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  if how == "SIGINT":
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    stopped = int(re.search(r"stopped by SIGINT at iteration (\d+)/40; saved \S+ckpt-(\d+)\.",
                            err).group(1))
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(
        f"ckpt-{stopped}") and 13 <= stopped < 40
  else:
    assert proc.returncode == -signal.SIGKILL
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-10")
  result = _bin_train(workdir, *flags_)
  assert result.returncode == 0, result.stderr[-3000:]
  got = _checkpoint_tensors(workdir)
  assert set(got) == set(expected)
  for name in expected:
    np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
  rows = [json.loads(l)["iteration"] for l in open(os.path.join(workdir, "log.jsonl"))]
  assert rows == list(range(1, 41))


def test_checkpoint_with_agents_by_position_is_refused(tmp_path, idx_dir):
  """A checkpoint of the older layout (agents in lists, not by id) names the problem."""
  from tfdiffgan.errors import TrainingError  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  old = tf.train.Checkpoint(iteration=tf.Variable(2, dtype=tf.int64),
                            generators=[tf.Variable(1.0), tf.Variable(2.0)])
  tf.train.CheckpointManager(old, str(workdir / "checkpoints"), max_to_keep=1).save(2)
  with pytest.raises(TrainingError, match="does not hold this run's agents by id"):
    run_lib.Run(tiny_config(idx_dir), str(workdir))
