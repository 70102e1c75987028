"""Benchmark of the exchange: one process vs N worker processes, all-gather vs neighbours only.

  python -m bench.exchange                                   # K 4/8, ring/complete, N 1/2/4
  python -m bench.exchange --K=4 --graphs=ring --workers=1,2 --iters=5 --out=/tmp/x.json

For each (K, graph): one process holding every agent (default strategy, local tensordot), then N
worker processes on loopback (bin/launch's ports and TF_CONFIG), each owning K/N agents, with the
``allgather`` and ``neighbors`` exchanges. Reported per setting:
  ms/it       median wall time of one iteration of Algorithm 1 on the chief (after 2 warm-up calls)
  sent/recv   bytes per iteration one worker hands to / gets from its collectives, as counted by
              the exchange from the tensors it passes (worker 0; the busiest worker on a ring is
              the same as any other)
  formula     deg_w L P per round summed over rounds (neighbors) or (N - 1) L P (allgather), in
              bytes, with P each round's parameter count: what the exchange should move
  lo bytes    bytes that crossed the loopback interface during the timed calls, per iteration
              and worker (/proc/net/dev: gRPC framing and the loss gathers included)
On 2 cores N processes share the CPU: ms/it measures the exchange's overhead plus contention,
not a speed-up; the point is the bytes, and that neighbors moves deg/(N-1) of what allgather moves.
"""

import json
import os
import sys
import tempfile
import time

from bench import parse_flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _loopback_bytes():
  try:
    with open("/proc/net/dev") as f:
      for line in f:
        if line.strip().startswith("lo:"):
          fields = line.split(":", 1)[1].split()
          return int(fields[0])  # received on lo = sent on lo
  except OSError:
    pass
  return None


def worker(K, graph, exchange, width, iters, n_d, batch, out):
  """One process of a setting (multiworker when TF_CONFIG is set): times the step, writes JSON."""
  multi = bool(os.environ.get("TF_CONFIG"))
  from tfdiffgan import diffusion  # pylint: disable=g-import-not-at-top
  strategy = diffusion.make_strategy("multiworker" if multi else "default", timeout_seconds=300)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfdiffgan import placement, topology  # pylint: disable=g-import-not-at-top
  from tfdiffgan.run import build  # pylint: disable=g-import-not-at-top
  from tfdiffgan.configs.default import get_config  # pylint: disable=g-import-not-at-top

  config = get_config()
  config.num_agents, config.topology.graph, config.model.width = K, graph, width
  config.train.n_d, config.data.batch_size = n_d, batch
  config.train.exchange = exchange if multi else "local"
  N, w = placement.cluster_from_env() if multi else (1, 0)
  agents = placement.Placement(K, N).agents_of(w)
  A = topology.combination_matrix(config.topology, K)
  step = build.make_agents(config, K, A, strategy, agents, w if multi else None)
  rng = np.random.default_rng(w)
  real = tuple(tf.constant(rng.uniform(-1, 1, (n_d, batch, 28, 28, 1)).astype(np.float32))
               for _ in agents)
  for _ in range(2):
    step(real)["d_loss"].numpy()
  times = []
  lo0 = _loopback_bytes()
  for _ in range(iters):
    t0 = time.perf_counter()
    step(real)["d_loss"].numpy()
    times.append(time.perf_counter() - t0)
  lo1 = _loopback_bytes()
  P_d = sum(int(np.prod(v.shape)) for v in step.d_vars[0])
  P_g = sum(int(np.prod(v.shape)) for v in step.g_vars[0])
  where = placement.Placement(K, N)
  deg = len(where.neighbour_workers(A != 0, w))
  L = where.per_worker
  rounds_p = n_d * P_d + P_g  # numbers one agent sends over an iteration (D rounds, then G)
  formula = {"neighbors": deg * L * rounds_p * 4, "allgather": (N - 1) * L * rounds_p * 4,
             "local": 0}[step.exchange.name]
  result = {"K": K, "graph": graph, "workers": N, "exchange": step.exchange.name, "width": width,
            "worker": w, "ms_per_iteration": 1000 * float(np.median(times)),
            "ms_all": [1000 * t for t in times], "sent": step.exchange.traffic["sent"],
            "received": step.exchange.traffic["received"], "formula_bytes": formula,
            "neighbour_workers": deg, "params_per_agent_iteration": rounds_p,
            "loopback_bytes_per_iteration_worker":
                None if lo0 is None else (lo1 - lo0) / iters / N}
  if w == 0:
    with open(out, "w") as f:
      json.dump(result, f)


def run_setting(K, graph, workers, exchange, args):
  from tfdiffgan import launch  # pylint: disable=g-import-not-at-top
  fd, out = tempfile.mkstemp(suffix=".json")
  os.close(fd)
  cmd = ["-m", "bench.exchange", "--worker", f"--K={K}", f"--graphs={graph}",
         f"--exchanges={exchange}", f"--width={args['width']}", f"--iters={args['iters']}",
         f"--n_d={args['n_d']}", f"--batch={args['batch']}", f"--out={out}"]
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if workers == 1:
    import subprocess  # pylint: disable=g-import-not-at-top
    code = subprocess.run([sys.executable, *cmd], env=env).returncode
  else:
    with open(os.devnull, "w") as sink:
      code = launch.launch(workers, [sys.executable, *cmd], env=env, out=sink)
  if code:
    raise RuntimeError(f"setting K={K} {graph} N={workers} {exchange} failed with code {code}")
  with open(out) as f:
    row = json.load(f)
  os.remove(out)
  return row


def _parse(argv):
  worker = "--worker" in argv  # this process is one worker of a setting (no value)
  args = parse_flags([a for a in argv if a != "--worker"],
                     {"K": "4,8", "graphs": "ring,complete", "workers": "1,2,4",
                      "exchanges": "allgather,neighbors", "width": "0.25", "iters": "10",
                      "n_d": "5", "batch": "64", "out": "bench/exchange.json"},
                     ints=("iters", "n_d", "batch"))
  args["worker"] = worker
  args["width"] = float(args["width"])
  return args


def table(rows):
  lines = ["   K graph     N exchange  |   ms/it | sent B/it  recv B/it  formula B/it | lo B/it/worker",
           "  -------------------------+---------+------------------------------------+---------------"]
  for r in rows:
    lo = r["loopback_bytes_per_iteration_worker"]
    lines.append(f"  {r['K']:2d} {r['graph']:<9} {r['workers']:2d} {r['exchange']:<9} | "
                 f"{r['ms_per_iteration']:7.1f} | {r['sent']:9d}  {r['received']:9d}  "
                 f"{r['formula_bytes']:12d} | {'' if lo is None else f'{lo:13.0f}'}")
  return "\n".join(lines)


def main(argv=None):
  args = _parse(sys.argv[1:] if argv is None else argv)
  if args["worker"]:
    worker(int(args["K"]), args["graphs"], args["exchanges"], args["width"], args["iters"],
           args["n_d"], args["batch"], args["out"])
    return
  rows = []
  for K in map(int, args["K"].split(",")):
    for graph in args["graphs"].split(","):
      for N in map(int, args["workers"].split(",")):
        if K % N:
          continue
        for exchange in (["local"] if N == 1 else args["exchanges"].split(",")):
          t0 = time.time()
          rows.append(run_setting(K, graph, N, exchange, args))
          print(f"K={K} {graph} N={N} {exchange}: {rows[-1]['ms_per_iteration']:.1f} ms/it "
                f"({time.time() - t0:.0f} s)", flush=True)
          with open(args["out"], "w") as f:
            json.dump({"args": args, "rows": rows}, f, indent=1)
  print(table(rows))
  print(f"wrote {args['out']}")


if __name__ == "__main__":
  main()
