"""The compressed-diffusion table: quality against bytes of finished bin/train runs.

  python tools/compression_table.py RUN_DIR [RUN_DIR ...] [--summaries=docs/results/compression]
  python tools/compression_table.py --from_summaries --summaries=docs/results/compression \
      --figure=docs/results/compression.png

Each RUN_DIR is a finished run of the same config with another ``compression`` setting. Printed
per run, as a Markdown table (and, with --summaries, a few-KB JSON per run written there, from
which --from_summaries rebuilds the table without the run directories):

  bytes/agent/it  what one agent broadcasts per iteration: its compressed payload for every round
                  (the exchange's ``payload_per_agent``; float32 weights and statistics for
                  ``none``). Each of its neighbours receives it once.
  network bytes/it  the same summed over every message of the iteration (schedule.messages).
                  For the baselines (train.mode fusion or gossip, float32): what their schedule
                  sent (run.json's parameters_sent_per_iteration, 4 bytes each; BatchNorm
                  statistics not counted), and per agent that over K.
  FID avg / raw   mean over agents of the averaged generators' FID, and of the raw iterates'
  robust cov.     every agent's robust coverage (classes both classifiers find)
  weakest         the smallest class share over agents, by the main and the check classifier
  disagreement    of D and G at the end (Theorem 1)

Then, for every setting run on more than one seed, a second table against float32 on the same
seeds: one run per seed moves the main job's FID by up to 20%, so the bar (within 10% of
float32) is read per seed and on the mean over the seeds both settings ran.
"""

import argparse
import glob
import json
import os

import numpy as np


def _compression_name(c):
  kind = c.get("kind", "none")
  steps = "".join(f", {k} {c[k]:g}" for k in ("zeta", "gamma") if c.get(k, 1.0) != 1.0)
  if kind == "quantize":
    local = ", statistics local" if c.get("statistics") == "local" else ""
    scales = ", byte scales" if c.get("scale_bits", 32) == 8 else ""
    dither = ", subtractive dither" if c.get("dither") == "subtractive" else ""
    choco = ", CHOCO combine" if c.get("combine") == "choco" else ""
    return f"quantize {c['bits']} bits (block {c['block']}{scales}{dither}{local}{choco}{steps})"
  if kind in ("topk", "randk"):
    return f"{kind} {100 * c['fraction']:g}%" + (f" ({steps[2:]})" if steps else "")
  return "none (float32)" if kind == "none" else kind


def _float32_bytes(config):
  """What one agent sends per iteration uncompressed: every combined variable of D (n_d rounds)
  and of G (n_g rounds), BatchNorm statistics included, as float32 (the models rebuilt from the
  run's config, as bin/train builds them)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from tfdiffgan import models  # pylint: disable=g-import-not-at-top
  from tfdiffgan.run import build  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict(config)
  g = build.make_generator(c, 0)
  d = models.make_discriminator(build.discriminator_width(c), minibatch_std=c.model.minibatch_std,
                                pack=c.model.pack)
  size = lambda m: sum(int(np.prod(v.shape)) for v in models.combined_variables(m))
  return 4 * (c.train.n_d * size(d) + c.train.n_g * size(g))


def summarize(run_dir):
  """The few numbers of one finished run that the table needs."""
  load = lambda name: json.load(open(os.path.join(run_dir, name)))
  config, record, metrics = load("config.json"), load("run.json"), load("metrics.json")
  float32 = _float32_bytes(config)
  mode = config["train"].get("mode", "diffusion")
  if mode == "diffusion":
    A = np.asarray(record["combination_matrix"])
    rounds = config["train"]["n_d"] + config["train"]["n_g"]
    messages = rounds * int(np.count_nonzero(A - np.diag(np.diag(A))))   # per iteration
    payload = record["exchange_bytes_per_iteration"].get("payload_per_agent") or float32
    network = payload / rounds * messages
    name = _compression_name(config.get("compression", {}))
  else:  # a baseline: what its schedule sent, float32 trainable weights
    network = 4 * record["parameters_sent_per_iteration"]
    payload = network / record["num_agents"]
    name = mode + (f" every {config['topology']['fusion_period']} it" if mode == "fusion" else "")
  agents, raw = metrics["agents"], metrics.get("raw", {}).get("agents", [])
  return {
      "run": os.path.basename(os.path.normpath(run_dir)),
      "compression": name,
      "seed": config["seed"], "iterations": record["iterations"],
      "bytes_per_agent_per_iteration": payload,
      "network_bytes_per_iteration": network,
      "float32_bytes_per_agent_per_iteration": float32,
      "fid_averaged": [a["fid"] for a in agents], "fid_raw": [a["fid"] for a in raw],
      "robust_coverage": [a["robust_coverage"] for a in agents],
      "weakest_main": min(a["weakest_class_share"] for a in agents),
      "weakest_check": min(a["check_weakest_class_share"] for a in agents),
      "disagreement_d": record["disagreement_discriminator"],
      "disagreement_g": record["disagreement_generator"],
      "train_seconds": record["train_seconds"],
  }


def _mean_fid(s):
  """The agents' mean FID of their averaged generators: the number every table and figure ranks."""
  return float(np.mean(s["fid_averaged"]))


def _change(a, b):
  return f"{100 * (a / b - 1):+.1f}%"


def table(summaries):
  base = max(s["float32_bytes_per_agent_per_iteration"] for s in summaries)
  rows = ["| compression | seed | bytes/agent/it | of float32 | network bytes/it | "
          "FID avg (mean; agents) | FID raw | robust cov. | weakest main / check | "
          "disagreement D / G | train |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for s in summaries:
    fid = s["fid_averaged"]
    rows.append(
        f"| {s['compression']} | {s['seed']} | {s['bytes_per_agent_per_iteration'] / 1e6:.3f} MB | "
        f"{s['bytes_per_agent_per_iteration'] / base:.3f} | "
        f"{s['network_bytes_per_iteration'] / 1e6:.2f} MB | "
        f"**{_mean_fid(s):.2f}** ({' / '.join(f'{x:.1f}' for x in fid)}) | "
        f"{np.mean(s['fid_raw']):.2f} | "
        f"{'/'.join(str(c) for c in s['robust_coverage'])} | "
        f"{100 * s['weakest_main']:.1f}% / {100 * s['weakest_check']:.1f}% | "
        f"{s['disagreement_d']:.1e} / {s['disagreement_g']:.1e} | "
        f"{s['train_seconds'] / 60:.0f} min |")
  return "\n".join(rows)


def seed_table(summaries):
  """Each setting run on two or more seeds against float32 on those seeds (per seed, and the
  mean over them), with the worst robust coverage of any agent in any of its runs."""
  float32 = {s["seed"]: _mean_fid(s) for s in summaries if s["compression"].startswith("none")}
  by_setting = {}
  for s in summaries:
    if not s["compression"].startswith("none") and s["seed"] in float32:
      by_setting.setdefault(s["compression"], []).append(s)
  rows = ["| compression | of float32 | seeds | FID per seed (float32) | per seed vs float32 | "
          "mean over seeds (float32) | mean vs float32 | lowest robust cov. |",
          "|---|---|---|---|---|---|---|---|"]
  for name, runs in by_setting.items():
    if len(runs) < 2:
      continue
    runs.sort(key=lambda s: s["seed"])
    ours, theirs = [_mean_fid(s) for s in runs], [float32[s["seed"]] for s in runs]
    ratio = runs[0]["float32_bytes_per_agent_per_iteration"] / runs[0][
        "bytes_per_agent_per_iteration"]
    rows.append(
        f"| {name} | 1/{ratio:.2f} | {', '.join(str(s['seed']) for s in runs)} | "
        f"{' / '.join(f'{a:.2f} ({b:.2f})' for a, b in zip(ours, theirs))} | "
        f"{' / '.join(_change(a, b) for a, b in zip(ours, theirs))} | "
        f"**{np.mean(ours):.2f}** ({np.mean(theirs):.2f}) | "
        f"**{_change(np.mean(ours), np.mean(theirs))}** | "
        f"{min(min(s['robust_coverage']) for s in runs)}/10 |")
  return "\n".join(rows) if len(rows) > 2 else ""


def figure(summaries, path):
  """Final FID against the bytes the network sends per iteration, one colour per setting: a
  small dot per seed, the large marker at the mean over its seeds (filled: the agents' averaged
  generators; hollow: their raw iterates). Circles: compressed diffusion, stars: float32
  diffusion, squares: the fusion and gossip baselines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(12, 5))
  colors = plt.get_cmap("tab20").colors
  marker = lambda name: ("s" if name.startswith(("fusion", "gossip")) else
                         "*" if name.startswith("none") else "o")
  by_setting = {}
  for s in sorted(summaries, key=lambda s: s["network_bytes_per_iteration"]):
    by_setting.setdefault(s["compression"], []).append(s)
  for i, (name, runs) in enumerate(by_setting.items()):
    x = np.mean([s["network_bytes_per_iteration"] for s in runs]) / 1e6
    fids, m, c = [_mean_fid(s) for s in runs], marker(name), colors[i % 20]
    seeds = ", ".join(str(s["seed"]) for s in runs)
    ax.scatter([x] * len(runs), fids, color=c, marker=m, s=12)
    ax.scatter(x, np.mean(fids), color=c, marker=m, s=70,
               label=f"{name}, seed{'s' if len(runs) > 1 else ''} {seeds}")
    ax.scatter(x, np.mean([np.mean(s["fid_raw"]) for s in runs]), facecolors="none",
               edgecolors=c, marker=m, s=70)
  ax.set(xscale="log", yscale="log", xlabel="MB sent by the network per iteration (all messages)",
         ylabel="final FID, agents' mean\n(filled: averaged G; hollow: raw)",
         title="main job: FID against bytes (large: mean over seeds; small: one seed)")
  ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1))  # beside: no point hidden
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="*", help="finished bin/train workdirs")
  parser.add_argument("--summaries", help="directory to write (or, with --from_summaries, "
                      "read) one JSON summary per run")
  parser.add_argument("--from_summaries", action="store_true")
  parser.add_argument("--figure", help="also plot FID against bytes into this PNG")
  args = parser.parse_args()
  if args.from_summaries:
    summaries = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(args.summaries,
                                                                           "*.json")))]
    # by bytes to the kB (the 4-bit runs before and after the packing by fields of widths
    # dividing 32 differ by 6 bytes), then setting and seed
    summaries.sort(key=lambda s: (-round(s["bytes_per_agent_per_iteration"], -3),
                                  s["compression"], s["seed"]))
  else:
    summaries = [summarize(r) for r in args.runs]
    if args.summaries:
      os.makedirs(args.summaries, exist_ok=True)
      for s in summaries:
        with open(os.path.join(args.summaries, f"{s['run']}.json"), "w") as f:
          json.dump(s, f, indent=1)
  print(table(summaries))
  seeds = seed_table(summaries)
  if seeds:
    print("\n" + seeds)
  if args.figure:
    figure(summaries, args.figure)


if __name__ == "__main__":
  main()
