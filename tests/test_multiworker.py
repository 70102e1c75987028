"""Agents owned by processes: every placement computes the same network, the exchange equals
numpy's w_k = sum_l a_lk phi_l with a non-symmetric A, a dead worker stops the others cleanly and
a relaunch resumes exactly, and bin/launch fails fast on a bad flag.

Worker processes are started through bin/launch (loopback ports from binding port 0)."""

import glob
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, tiny_config
from tfdiffgan import launch
from tfdiffgan import run as run_lib

# A 4-cycle whose weights differ by direction: doubly stochastic, not symmetric, so A and A^T
# give different networks (a_{k-1,k} = 0.3, a_{k+1,k} = 0.2, a_kk = 0.5).
P = np.roll(np.eye(4), 1, axis=1)
NONSYMMETRIC = 0.5 * np.eye(4) + 0.3 * P + 0.2 * P.T


def _matrix_file(tmp_path):
  path = str(tmp_path / "A.txt")
  np.savetxt(path, NONSYMMETRIC)
  return path


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


def _launch(workers, *command, timeout=400):
  cmd = [sys.executable, os.path.join(ROOT, "bin", "launch"), f"--workers={workers}", "--",
         *command]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)


def _train_flags(idx_dir, workdir, matrix, *extra, iterations=2):
  return [os.path.join(ROOT, "bin", "train"), f"--config={os.path.join(ROOT, 'configs', 'mnist_iid.py')}",
          f"--workdir={workdir}", f"--config.data.source_dir={idx_dir}", "--config.num_agents=4",
          "--config.topology.rule=file", f"--config.topology.matrix_file={matrix}",
          "--config.model.width=0.125", "--config.model.latent_dim=16",
          "--config.data.batch_size=8", f"--config.train.iterations={iterations}",
          "--config.train.n_d=2", "--config.train.log_every=1", "--config.train.sample_every=1000",
          "--config.train.checkpoint_every=1000", "--config.eval.eval_every=0",
          "--config.eval.final_samples=0", *extra]


def _agent_weights(workdir):
  """{checkpoint key: value} of every agent's G and D, merged over the workers' checkpoints."""
  out = {}
  dirs = sorted(glob.glob(os.path.join(workdir, "checkpoints", "worker-*"))) or \
      [os.path.join(workdir, "checkpoints")]
  for d in dirs:
    reader = tf.train.load_checkpoint(d)
    for name in reader.get_variable_to_shape_map():
      if name.startswith(("generators/agent_", "discriminators/agent_", "ema_generators/agent_")):
        out[name] = reader.get_tensor(name)
  return out


@pytest.mark.e2e
def test_exchanges_equal_numpy_with_nonsymmetric_matrix(tmp_path):
  """allgather and neighbors, over 2 and 4 worker processes: w_k = sum_l a_lk phi_l exactly as
  numpy computes it (and not with A^T), and neighbors moves deg/(N-1) of allgather's bytes."""
  matrix = _matrix_file(tmp_path)
  rng = np.random.default_rng(0)
  phi = [rng.normal(size=(4, 3, 5)).astype(np.float32), rng.normal(size=(4, 7)).astype(np.float32)]
  expected = [np.tensordot(NONSYMMETRIC.T, p, axes=1) for p in phi]  # [k] = sum_l a_lk phi_l
  transposed = [np.tensordot(NONSYMMETRIC, p, axes=1) for p in phi]
  nbytes = 4 * (15 + 7)  # one agent's phi, float32
  for workers in (2, 4):
    out = tmp_path / f"n{workers}"
    out.mkdir()
    result = _launch(workers, os.path.join(ROOT, "tests", "workers", "exchange_worker.py"),
                     str(out), matrix)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    L = 4 // workers
    for w in range(workers):
      saved = json.load(open(out / f"worker-{w}.json"))
      own = saved["agents"]
      assert own == list(range(w * L, (w + 1) * L))
      for name, r in saved["results"].items():
        for got, want, wrong in zip(r["w"], expected, transposed):
          np.testing.assert_allclose(np.array(got), want[own], atol=1e-6, err_msg=name)
          assert not np.allclose(np.array(got), wrong[own], atol=1e-3)
      ring_peers = workers - 1
      neighbour_workers = 1 if workers == 2 else 2  # blocks {0,1},{2,3} touch once; 4-cycle: 2
      assert saved["results"]["allgather"]["traffic"]["received"] == ring_peers * L * nbytes
      assert saved["results"]["neighbors"]["traffic"]["received"] == neighbour_workers * L * nbytes


@pytest.mark.e2e
def test_every_placement_trains_the_same_network(tmp_path, idx_dir):
  """K = 4, non-symmetric A: one process; mirrored over 2 replicas; 2 worker processes with
  allgather; 2 and 4 worker processes with neighbors: the same weights (generator averages
  included, step size decaying) to 1e-5, and the same logged disagreement (across workers it is
  computed from an all-reduced centroid and per-worker scatters: tfdiffgan/run/sync.py)."""
  matrix = _matrix_file(tmp_path)
  c = tiny_config(idx_dir, **{"num_agents": 4, "data.partition": "iid", "topology.rule": "file",
                              "topology.matrix_file": matrix, "model.latent_dim": 16,
                              "train.iterations": 2, "train.checkpoint_every": 1000,
                              "train.sample_every": 1000, "train.ema_decay": 0.5,
                              "train.lr_decay": 0.5})
  reference_dir = str(tmp_path / "default")
  run_lib.Run(c, reference_dir).train()
  reference = _agent_weights(reference_dir)
  last_row = lambda workdir: json.loads(open(os.path.join(workdir, "log.jsonl")).readlines()[-1])
  spread = [last_row(reference_dir)[f"disagreement_{n}"] for n in ("discriminator", "generator")]
  assert min(spread) > 0
  assert len(reference) > 40 and any(k.startswith("ema_generators/") for k in reference)
  runs = {"mirrored2": (1, ["--config.train.strategy=mirrored", "--config.train.replicas=2"]),
          "allgather2": (2, ["--config.train.strategy=multiworker",
                             "--config.train.exchange=allgather"]),
          "neighbors2": (2, ["--config.train.strategy=multiworker",
                             "--config.train.exchange=neighbors"]),
          "neighbors4": (4, ["--config.train.strategy=multiworker",
                             "--config.train.exchange=neighbors"])}
  worst = {}
  for name, (workers, extra) in runs.items():
    workdir = str(tmp_path / name)
    result = _launch(workers, *_train_flags(idx_dir, workdir, matrix, *extra,
                                            "--config.train.ema_decay=0.5",
                                            "--config.train.lr_decay=0.5"))
    assert result.returncode == 0, result.stdout[-3000:]
    got = _agent_weights(workdir)
    assert set(got) == set(reference), name
    worst[name] = max(float(np.max(np.abs(got[k] - reference[k]))) for k in reference)
    assert [last_row(workdir)[f"disagreement_{n}"] for n in ("discriminator", "generator")] == \
        pytest.approx(spread, rel=1e-3), name
    if workers > 1:
      # the run did spread the agents as asked and combined over the wire with the exchange
      # named in its flags (not a silent fallback), which carried bytes
      record = json.load(open(os.path.join(workdir, "run.json")))
      per_worker = 4 // workers
      assert record["placement"]["agents"] == [
          list(range(w * per_worker, (w + 1) * per_worker)) for w in range(workers)], name
      assert record["exchange"] == name.rstrip("0123456789"), (name, record["exchange"])
      traffic = record["exchange_bytes_per_iteration"]
      assert traffic["sent"] > 0 and traffic["received"] > 0, (name, traffic)
      assert len(os.listdir(os.path.join(workdir, "export"))) == 4  # the chief exported all
  print("max abs weight difference vs one process:", worst)
  assert max(worst.values()) < 1e-5, worst
  # the agents did train apart (so equality is not trivial)
  g0 = [k for k in reference if k.startswith("generators/agent_0/") and "kernel" in k][0]
  assert not np.allclose(reference[g0], reference[g0.replace("agent_0", "agent_1")])


@pytest.mark.e2e
def test_compressed_payload_crosses_workers_and_trains_the_same_network(tmp_path, idx_dir):
  """ACTC with 4-bit quantization and dropouts, K = 4, non-symmetric A: one process, 2 workers
  with allgather and 4 with neighbors (each keeping q only for its reach: its own agents and its
  two neighbour workers') give the same weights and q to 1e-5, and each worker's exchange counts
  the packed payload, not float32."""
  matrix = _matrix_file(tmp_path)
  flags = ["--config.compression.kind=quantize", "--config.compression.bits=4",
           "--config.topology.agent_dropout=0.2"]
  reference_dir = str(tmp_path / "default")
  result = _launch(1, *_train_flags(idx_dir, reference_dir, matrix, *flags,
                                    "--config.train.checkpoint_every=2"))
  assert result.returncode == 0, result.stdout[-3000:]
  reader = tf.train.load_checkpoint(os.path.join(reference_dir, "checkpoints"))
  reference = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
               if n.startswith(("generators/agent_", "discriminators/agent_", "compression/"))
               and "OPTIMIZER" not in n}
  assert sum("/q_g/" in n for n in reference) == 4
  for name, workers in (("allgather", 2), ("neighbors", 4)):
    workdir = str(tmp_path / name)
    result = _launch(workers, *_train_flags(
        idx_dir, workdir, matrix, *flags, "--config.train.strategy=multiworker",
        f"--config.train.exchange={name}", "--config.train.checkpoint_every=2"))
    assert result.returncode == 0, result.stdout[-3000:]
    got = {}
    for w in range(workers):
      reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints", f"worker-{w}"))
      for n in reader.get_variable_to_shape_map():
        if n.startswith(("generators/agent_", "discriminators/agent_", "compression/")) and \
            "OPTIMIZER" not in n:
          got[n] = reader.get_tensor(n)
    held = [n for n in got if "_worker_" in n]   # a worker's copy of another's agents' q
    owned = {re.sub(r"(q_[dg])_worker_\d", r"\1", n) for n in held}
    assert owned <= set(reference)
    # allgather: each worker holds the other's 2 agents; neighbors on the 4-cycle: 2 each
    assert len(held) == 2 * 2 * workers, (name, len(held))
    for n in set(got) - set(held):
      np.testing.assert_allclose(got[n], reference[n], atol=1e-5, err_msg=f"{name}: {n}")
    for n in held:
      np.testing.assert_allclose(got[n], reference[re.sub(r"(q_[dg])_worker_\d", r"\1", n)],
                                 atol=1e-5, err_msg=f"{name}: {n}")
    traffic = json.load(open(os.path.join(workdir, "run.json")))["exchange_bytes_per_iteration"]
    peers = 1 if name == "allgather" else 2      # blocks sent per round: N - 1, or deg_w
    rows = peers * (4 // workers)                # agents' rows sent per round
    payload = traffic["payload_per_agent"]       # what one agent's packed messages weigh
    # the exchange moved the payload rows (its words padded to 32 bits: < 4 bytes a round)
    assert rows * payload <= traffic["sent"] <= rows * (payload + 4 * 3), (name, traffic)


def _wait_for(predicate, timeout):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    time.sleep(0.2)
  return False


@pytest.mark.e2e
def test_dead_worker_stops_the_others_and_relaunch_resumes_exactly(tmp_path, idx_dir):
  matrix = _matrix_file(tmp_path)
  extra = ["--config.train.strategy=multiworker", "--config.train.exchange=neighbors",
           "--config.train.checkpoint_every=5"]  # no timeout: the health check finds the dead
  straight = str(tmp_path / "straight")
  result = _launch(2, *_train_flags(idx_dir, straight, matrix, *extra, iterations=30))
  assert result.returncode == 0, result.stdout[-3000:]

  workdir = str(tmp_path / "killed")
  flags = _train_flags(idx_dir, workdir, matrix, *extra, iterations=30)
  procs = []
  for i, tf_config in enumerate(launch.tf_configs(2)):
    procs.append(subprocess.Popen([sys.executable, *flags], env=dict(_env(), TF_CONFIG=tf_config),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  ckpt = os.path.join(workdir, "checkpoints", "worker-1", "ckpt-5.index")
  assert _wait_for(lambda: os.path.exists(ckpt), 240), procs[1].communicate()[1][-2000:]
  procs[1].send_signal(signal.SIGKILL)
  t0 = time.time()
  _, err = procs[0].communicate(timeout=120)
  waited = time.time() - t0
  assert procs[0].returncode == 2, err[-3000:]
  assert "lost contact with the other workers" in err and "Relaunch the same command" in err
  assert "Traceback" not in err
  assert waited < 90, waited

  result = _launch(2, *flags)
  assert result.returncode == 0, result.stdout[-3000:]
  assert "resumed" in result.stdout
  a, b = _agent_weights(straight), _agent_weights(workdir)
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.e2e
def test_relaunch_with_other_worker_count_is_refused(tmp_path, idx_dir):
  """Each worker checkpoints its own agents: 2 workers cannot resume what 4 saved (a workdir
  whose placement record says 4 processes), and nothing is written."""
  matrix = _matrix_file(tmp_path)
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "worker-3").mkdir(parents=True)
  (workdir / "checkpoints" / "placement.json").write_text(json.dumps(
      {"processes": 4, "num_agents": 4, "num_workers": 4, "agents": [[0], [1], [2], [3]]}))
  result = _launch(2, *_train_flags(idx_dir, str(workdir), matrix,
                                    "--config.train.strategy=multiworker", iterations=1))
  assert result.returncode == 2
  assert "trained by 4 process(es)" in result.stdout and "--workers=4" in result.stdout
  assert sorted(os.listdir(workdir / "checkpoints")) == ["placement.json", "worker-3"]
  assert not (workdir / "config.json").exists()


@pytest.mark.e2e
def test_launch_fails_fast_on_a_bad_flag(tmp_path):
  t0 = time.time()
  result = _launch(3, os.path.join(ROOT, "bin", "train"), "--config=" +
                   os.path.join(ROOT, "configs", "mnist_iid.py"), f"--workdir={tmp_path}/w",
                   "--config.train.strategy=multiworker", "--no_such_flag=1", timeout=120)
  assert result.returncode != 0
  assert "no_such_flag" in result.stdout
  assert "stopping the others" in result.stdout or result.stdout.count("no_such_flag") >= 1
  assert time.time() - t0 < 100


def test_launch_refuses_a_bad_invocation():
  assert launch.main(["--workers=2"]) == 2              # no '--' and no command
  assert launch.main(["--workers=0", "--", "true"]) == 2
  assert launch.main(["--bogus", "--", "true"]) == 2
  assert launch.main(["--workers=2", "--", "true"]) == 0


def test_launch_gives_each_worker_its_prefix_and_tf_config():
  """Per-worker TF_CONFIGs and command prefixes (how tfdiffgan/netns.py puts worker i on a
  simulated host: ``ip netns exec NS_i``): worker i runs PREFIX_i COMMAND with TF_CONFIG_i."""
  out = io.StringIO()
  code = launch.launch(2, ["sh", "-c", 'echo "$HOST $TF_CONFIG"'], out=out,
                       configs=["config-0", "config-1"],
                       prefixes=[["env", "HOST=a"], ["env", "HOST=b"]])
  assert code == 0
  assert sorted(out.getvalue().splitlines()) == ["[w1] b config-1", "a config-0"]
  with pytest.raises(launch.LaunchError, match="2 workers but 1 TF_CONFIG"):
    launch.launch(2, ["true"], configs=["only-one"])


def test_tf_configs_name_distinct_free_ports():
  configs = [json.loads(c) for c in launch.tf_configs(3)]
  hosts = configs[0]["cluster"]["worker"]
  assert len(set(hosts)) == 3 and all(h.startswith("127.0.0.1:") for h in hosts)
  assert [c["task"]["index"] for c in configs] == [0, 1, 2]
  assert all(c["cluster"] == configs[0]["cluster"] for c in configs)
