"""Benchmark of multiworker training on simulated hosts with real bandwidth limits.

  python -m bench.netns                       # N 2/4, every link, none/quantize4 (~15 min, 2 cores)
  python -m bench.netns --workers=2 --links=loopback,100mbit --compression=none --cycles=2 \
      --out=/tmp/netns.json

Needs root and iproute2 (tfdiffgan/netns.py). Every setting is bin/train run for real: K = 4
agents with the main job's model (configs/mnist_noniid.py: G width 0.375, D width 0.5, n_d 1,
batch 64) on a ring, split over N = 2 or 4 worker processes (train.strategy=multiworker); the
data is split iid (the partition does not change the step's cost, and the config's five class
groups do not fit four agents). Links:
  loopback   bin/launch's cluster (127.0.0.1, one port per worker), run inside one namespace of
             its own so that its lo counters count this run alone: one run
  unlimited  one namespace per worker, joined by a veth pair (N = 2) or a bridge (N = 4)
  1gbit      the same with a tbf rate limit on both directions of every link
  100mbit    ditto
The namespace links share ONE run per (N, exchange, compression): after --warmup log windows the
limit changes at every log row (unlimited, 1gbit, 100mbit, then again, --cycles times), so each
link is timed in the same warm processes under the same background load, and the run's start-up
and end (~1 min under load, exports included) are paid once, not three times.
Reported per setting:
  ms/it      median over that link's log windows of the chief's own iteration time (log.jsonl's
             iterations_per_second over --log_every iterations). Each window holds one logging
             collective (the disagreement statistics), as every logged run does.
  x unlim    paired: each window's ms/it over the unlimited window of the same cycle (a few
             seconds apart), the median over cycles; the loopback run is a run of its own, so it
             has none: compare it only through ms/it, across runs, under the same load
  exch B/it  bytes per iteration one worker hands to its collectives, as the exchange counts
             them (run.json's exchange_bytes_per_iteration, the chief's; a ring is symmetric)
  wire B/it  bytes per iteration and worker that left the workers' interfaces (eth0 tx, mean
             over workers; lo tx / N on loopback) in that link's windows, the counters read from
             a thread as each log row appears: TCP/IP headers, gRPC framing and the small
             per-iteration sync gather included, and once per window the logging collective
  ratio      wire / exch
  log B/it   what the logging collectives add to wire B/it (computed, ``logging_bytes``: the
             centroid's float32 all-reduce, 8 (N - 1) (P_D + P_G) / N bytes, and the row's small
             gather, over log_every; whatever the compression), and the ratio without it:
             (wire - log) / exch, the wire's overhead on the exchange itself (framing, headers:
             veth and lo count GSO segments of up to 64 KiB, one header each)
On 2 cores the N processes share the CPU with each other (and with whatever else runs: see the
load average printed and stored), so compare rows within one bench run, never absolute times.
"""

import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from bench import parse_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINKS = ("loopback", "unlimited", "1gbit", "100mbit")
COMPRESSION = {"none": [],
               **{f"quantize{b}": ["--config.compression.kind=quantize",
                                   f"--config.compression.bits={b}"] for b in (2, 3, 4, 8)},
               # 4 bits, one scale per 1,024 weights, G's BatchNorm statistics unsent: 1/8.05
               "quantize4local": ["--config.compression.kind=quantize",
                                  "--config.compression.bits=4", "--config.compression.block=1024",
                                  "--config.compression.statistics=local"],
               # 4 bits, a byte scale per 160 weights, subtractive dither, statistics unsent:
               # 1/8.01
               "quantize4sub": ["--config.compression.kind=quantize",
                                "--config.compression.bits=4", "--config.compression.block=160",
                                "--config.compression.scale_bits=8",
                                "--config.compression.dither=subtractive",
                                "--config.compression.statistics=local"]}
# the same with the CHOCO combine: docs/RESULTS.md's recommended setting
COMPRESSION["quantize4choco"] = [*COMPRESSION["quantize4sub"], "--config.compression.combine=choco"]


def train_command(workdir, workers, exchange, compression, iters, log_every):
  return [os.path.join(ROOT, "bin", "train"),
          f"--config={os.path.join(ROOT, 'configs', 'mnist_noniid.py')}", f"--workdir={workdir}",
          "--config.num_agents=4", "--config.topology.graph=ring", "--config.data.partition=iid",
          f"--config.train.iterations={iters}", f"--config.train.log_every={log_every}",
          "--config.train.checkpoint_every=100000", "--config.train.sample_every=100000",
          "--config.eval.eval_every=0", "--config.eval.final_samples=0",
          *(["--config.train.strategy=multiworker", f"--config.train.exchange={exchange}"]
            if workers > 1 else []),
          *COMPRESSION[compression]]


@functools.lru_cache(maxsize=None)
def logging_bytes(workers, log_every):
  """Bytes per iteration one worker sends in the logging collectives (tfdiffgan/run/sync.py),
  spread over the log_every iterations of a window: at each log row a ring all-reduce of the
  P_D + P_G trainable weights as float32 (the centroid: 2 (N - 1) / N of it per worker), then the
  row's all-gather (a ring: N - 1 blocks forwarded) of 1 + L + 2 float64 (stop flag, finiteness
  flags, the two scatters about the centroid)."""
  from tfdiffgan import models  # pylint: disable=g-import-not-at-top
  from configs import mnist_noniid  # pylint: disable=g-import-not-at-top
  c = mnist_noniid.get_config()
  count = lambda m: sum(int(v.shape.num_elements()) for v in m.trainable_variables)
  params = (count(models.make_generator(c.model.latent_dim, c.model.width)) +
            count(models.make_discriminator(c.model.d_width or c.model.width)))
  centroid = 4 * params * 2 * (workers - 1) / workers
  row = 8 * (1 + 4 // workers + 2) * (workers - 1)
  return (centroid + row) / log_every


def _refusal(text):
  """The one-line error bin/train printed, if it refused the flags (exit 2)."""
  errors = [line for line in text.splitlines() if "error: " in line]
  return errors[0].split("error: ", 1)[1].strip() if errors else None


def _rate(link):
  return None if link in ("loopback", "unlimited") else link


def phases(links, warmup, cycles):
  """The link of each log window (1-based: window w ends at row w * log_every): ``warmup``
  windows unmeasured (tracing, first writes), then ``links`` in turn ``cycles`` times, then one
  window unmeasured (the run's end follows its row)."""
  return [None] * warmup + list(links) * cycles + [None]


def run_once(links, workers, exchange, compression, args, scratch):
  """One bin/train run; on namespaces the link rate changes from window to window (``phases``).
  Returns one row per link."""
  from tfdiffgan import netns  # pylint: disable=g-import-not-at-top
  name = f"{'-'.join(links)}-n{workers}-{exchange}-{compression}"
  workdir, log_path = os.path.join(scratch, name), os.path.join(scratch, name + ".out")
  every = args["log_every"]
  plan = phases(links, args["warmup"], args["cycles"])
  cmd = train_command(workdir, workers, exchange, compression, every * len(plan), every)
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  base = {"workers": workers, "exchange": exchange, "compression": compression,
          "log_every": every, "load_average": os.getloadavg()[0]}
  loopback = links == ("loopback",)
  t0 = time.time()
  with netns.Hosts(1 if loopback else workers) as hosts:
    def switch(row):  # after row w's snapshot: the limit of window w + 1
      w = row["iteration"] // every
      if not loopback and w < len(plan) and plan[w] is not None:
        hosts.set_rate(_rate(plan[w]))
    with netns.CountersAtRows(hosts, os.path.join(workdir, "log.jsonl"), on_row=switch) as watch:
      with open(log_path, "w") as out:
        code = hosts.launch(cmd, workers=workers, env=env, out=out)
  wall = time.time() - t0
  with open(log_path) as f:
    text = f.read()
  if code:
    # refused: the compression flags, turned down before the first iteration (exit 2, one line);
    # anything else (the baseline failing, a lost worker, a signal) is a failure
    why = (_refusal(text) if code == 2 and compression != "none" and not watch.samples
           else None)
    return [dict(base, link=link, **({"refused": why} if why else {"failed": text[-2000:]}))
            for link in links]
  record = json.load(open(os.path.join(workdir, "run.json")))
  sent = record["exchange_bytes_per_iteration"]["sent"]
  snapped = {row["iteration"]: row for row, _, _ in watch.samples}
  rows = []
  by_cycle = {}  # (link, cycle) -> ms/it of that window
  for link in links:
    ms, iterations, wire = [], 0, 0
    for w, phase in enumerate(plan, start=1):
      if phase != link or w * every not in snapped or (w - 1) * every not in snapped:
        continue
      ms.append(1000 / snapped[w * every]["iterations_per_second"])
      by_cycle[link, (w - 1 - args["warmup"]) // len(links)] = ms[-1]
      n, tx, _ = watch.between((w - 1) * every, w * every)
      iterations += n
      wire += sum(tx) / len(tx) if not loopback else tx[0] / workers  # lo: every worker's tx
    per_worker = wire / iterations if iterations else None
    logged = logging_bytes(workers, every)
    rows.append(dict(base, link=link, ms_per_iteration=statistics.median(ms) if ms else None,
                     ms_windows=ms, exchange_bytes_per_iteration=sent,
                     wire_bytes_per_iteration=per_worker, logging_bytes_per_iteration=logged,
                     ratio=per_worker / sent if sent and per_worker else None,
                     ratio_without_logging=(per_worker - logged) / sent
                     if sent and per_worker else None,
                     measured_iterations=iterations, run_wall_seconds=wall,
                     run_iterations=every * len(plan), trace_seconds=record.get("trace_seconds")))
  for row in rows:  # paired: each window against the unlimited window of its own cycle
    pairs = [by_cycle[row["link"], c] / by_cycle["unlimited", c] for c in range(args["cycles"])
             if (row["link"], c) in by_cycle and ("unlimited", c) in by_cycle]
    row["x_unlimited"] = statistics.median(pairs) if pairs and not loopback else None
    row["x_unlimited_cycles"] = pairs
  shutil.rmtree(workdir, ignore_errors=True)
  return rows


def table(rows):
  lines = ["  link       N exchange  compression |   ms/it  x unlim | exch B/it  wire B/it  ratio | "
           "log B/it  ratio w/o log",
           "  ------------------------------------+------------------+----------------------------+-"
           "----------------------"]
  for r in rows:
    head = f"  {r['link']:<9} {r['workers']:2d} {r['exchange']:<9} {r['compression']:<11} | "
    if not r.get("ms_per_iteration"):
      why = r.get("refused") or "failed (see the JSON)"
      lines.append(head + f"{'-':>7}  {'':>7} | {why[:90]}")
      continue
    paired = "" if r.get("x_unlimited") is None else f"{r['x_unlimited']:.2f}"
    lines.append(head + f"{r['ms_per_iteration']:7.0f}  {paired:>7} | "
                 f"{r['exchange_bytes_per_iteration']:9d}  "
                 f"{r['wire_bytes_per_iteration']:9.0f}  {r['ratio']:5.2f} | "
                 f"{r['logging_bytes_per_iteration']:8.0f}  {r['ratio_without_logging']:13.3f}")
  return "\n".join(lines)


def _parse(argv):
  args = parse_flags(argv, {"workers": "2,4", "links": ",".join(LINKS), "exchanges": "neighbors",
                            "compression": "none,quantize4", "log_every": "5", "warmup": "2",
                            "cycles": "5", "out": "bench/netns.json"},
                     ints=("log_every", "warmup", "cycles"))
  if args["warmup"] < 1 or args["cycles"] < 1 or args["log_every"] < 1:
    raise SystemExit("error: --warmup, --cycles and --log_every must be positive")
  if any(int(n) not in (2, 4) for n in args["workers"].split(",")):
    raise SystemExit(f"error: --workers={args['workers']}: 2 or 4 (the 4 agents split evenly)")
  for key, allowed in (("links", LINKS), ("compression", COMPRESSION)):
    for value in args[key].split(","):
      if value not in allowed:
        raise SystemExit(f"error: --{key}={value}: choose from {list(allowed)}")
  return args


def main(argv=None):
  args = _parse(sys.argv[1:] if argv is None else argv)
  from tfdiffgan import netns  # pylint: disable=g-import-not-at-top
  ok, why = netns.permitted()
  if not ok:
    raise SystemExit(f"error: cannot make network namespaces here: {why}")
  links = args["links"].split(",")
  runs = ([("loopback",)] if "loopback" in links else []) + \
      ([tuple(l for l in links if l != "loopback")] if set(links) - {"loopback"} else [])
  scratch = tempfile.mkdtemp(prefix="bench-netns-")
  rows, refused, keep = [], {}, None
  t_start = time.time()
  try:
    for compression in args["compression"].split(","):
      for workers in map(int, args["workers"].split(",")):
        for exchange in args["exchanges"].split(","):
          for run_links in runs:
            if compression in refused:  # bin/train refuses these flags: once is enough
              rows += [{"link": l, "workers": workers, "exchange": exchange,
                        "compression": compression, "refused": refused[compression]}
                       for l in run_links]
              continue
            t0 = time.time()
            new = run_once(run_links, workers, exchange, compression, args, scratch)
            rows += new
            for row in new:
              if "refused" in row:
                refused[compression] = row["refused"]
              if "failed" in row:  # a bug, or a signal the launcher passed on: stop here
                with open(args["out"], "w") as f:
                  json.dump({"args": args, "rows": rows}, f, indent=1)
                keep = scratch
                raise SystemExit(f"error: {row['link']} N={workers} {exchange} {compression} "
                                 f"failed; its last output:\n{row['failed']}\n(all of it in "
                                 f"{scratch})")
              done = (f"{row['ms_per_iteration']:.0f} ms/it, ratio {row['ratio']:.2f}"
                      if row.get("ms_per_iteration") else row.get("refused") or "FAILED")
              print(f"{row['link']} N={workers} {exchange} {compression}: {done}", flush=True)
            print(f"  ({time.time() - t0:.0f} s, load average {new[0]['load_average']:.1f})",
                  flush=True)
            with open(args["out"], "w") as f:
              json.dump({"args": args, "rows": rows}, f, indent=1)
  finally:
    if keep is None:
      shutil.rmtree(scratch, ignore_errors=True)
  print(table(rows))
  print(f"{time.time() - t_start:.0f} s; wrote {args['out']}")


if __name__ == "__main__":
  main()
