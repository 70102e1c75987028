"""The paper's experiments as a resumable grid of ordinary training runs, then figures and JSON.

Downstream of everything else: each cell is a ``run.Run`` in its own workdir under
RESULTS_DIR/runs/; a cell whose run.json already reaches its iterations is skipped, so the grid
can be run piecewise and rerun after a crash. Figures are matplotlib PNGs in RESULTS_DIR.
"""

import json
import os
import time

import numpy as np

from tfdiffgan.configs import default as default_config
from tfdiffgan import data as data_lib
from tfdiffgan import topology


THEOREM1_GROUPS = ("theorem1", "theorem1_warm")  # from scratch; from one common trained state
APART = THEOREM1_GROUPS + ("faults",)  # groups kept out of the per-mode table of final metrics
BASELINES = ("fusion", "gossip")  # the works the paper cites, beside its own three modes


def classes_for(num_agents):
  """Two classes for agent 0 ({0, 1}: zeros and ones, or T-shirts and trousers), the other eight
  dealt round-robin to the remaining agents (K = 5 gives the paper's two classes each)."""
  rest = [[] for _ in range(num_agents - 1)]
  for i, c in enumerate(range(2, data_lib.NUM_CLASSES)):
    rest[i % (num_agents - 1)].append(c)
  return [[0, 1]] + rest


def _apply_quick(grid):
  q = grid.quick
  for key in ("datasets", "seeds", "num_agents", "width", "iterations", "eval_every",
              "periodic_samples", "final_samples", "homogeneous_modes", "baseline_datasets"):
    grid[key] = q[key]
  grid.theorem1.mus, grid.theorem1.graphs = q.theorem1_mus, q.theorem1_graphs
  grid.theorem1.num_agents, grid.theorem1.iterations = q.theorem1_num_agents, q.theorem1_iterations
  grid.theorem1.log_every = grid.theorem1.warm_log_every = 1
  grid.theorem1.warmup_iterations = q.theorem1_warmup_iterations
  grid.theorem1.warm_iterations = q.theorem1_iterations
  grid.faults.link_failures, grid.faults.agent_dropouts = (q.faults_link_failures,
                                                           q.faults_agent_dropouts)
  grid.faults.seeds, grid.faults.iterations = grid.seeds[:1], q.iterations
  grid.faults.eval_every = q.eval_every
  return grid


def cells(grid, results_dir=""):
  """(name, group, training config) for every run of the grid (warm starts read from
  RESULTS_DIR/runs/, hence the argument)."""
  out = []

  def base(dataset, seed, K):
    c = default_config.get_config()
    c.seed, c.num_agents, c.data.name = seed, K, dataset
    c.model.width, c.train.iterations = grid.width, grid.iterations
    c.eval.eval_every, c.eval.periodic_samples = grid.eval_every, grid.periodic_samples
    c.eval.final_samples = grid.final_samples
    c.topology.graph = "paper5" if K == 5 else "ring"
    c.topology.fusion_period = grid.fusion_period
    c.train.log_every = max(1, min(50, grid.iterations // 10))
    c.train.checkpoint_every = c.train.sample_every = max(1, grid.iterations // 4)
    c.data.classes = classes_for(K)
    return c

  def homogeneous_and_noniid(seed):
    for dataset in grid.datasets:
      for mode in grid.homogeneous_modes:
        if mode in BASELINES and dataset not in grid.baseline_datasets:
          continue
        c = base(dataset, seed, grid.num_agents)
        c.train.mode, c.data.partition = mode, "iid"
        out.append((f"{dataset}/iid/{mode}/seed{seed}", "homogeneous", c))
      for mode in grid.noniid_modes:
        c = base(dataset, seed, grid.num_agents)
        c.train.mode, c.data.partition = mode, "classes"
        out.append((f"{dataset}/classes/{mode}/seed{seed}", "noniid", c))

  def sweep_cell(graph, mu, iterations, log_every):
    """One Theorem 1 run: K fixed, homogeneous MNIST, no FID passes (only the disagreement);
    mu None keeps the default step size."""
    t = grid.theorem1
    c = base(t.dataset, grid.seeds[0], t.num_agents)
    c.topology.graph, c.data.partition = graph, "iid"
    if mu is not None:
      c.train.learning_rate = mu
    c.train.iterations = c.train.checkpoint_every = c.train.sample_every = iterations
    c.train.log_every = log_every
    c.eval.eval_every, c.eval.final_samples = 0, 0
    return c

  def theorem1():
    t = grid.theorem1
    for graph in t.graphs:
      for mu in t.mus:
        out.append((f"theorem1/{graph}/mu{mu}", "theorem1",
                    sweep_cell(graph, mu, t.iterations, t.log_every)))

  def theorem1_warm():
    t = grid.theorem1
    if not t.warmup_iterations:
      return
    warmup = "theorem1_warm/warmup"  # complete graph: every agent leaves it with the same weights
    out.append((warmup, "warmup", sweep_cell("complete", None, t.warmup_iterations,
                                             t.warm_log_every)))
    for graph in t.graphs:
      for mu in t.mus:
        c = sweep_cell(graph, mu, t.warm_iterations, t.warm_log_every)
        c.train.init_from = os.path.join(results_dir, "runs", warmup)
        out.append((f"theorem1_warm/{graph}/mu{mu}", "theorem1_warm", c))

  def faults():
    """The main job under random link failures (p) and agent dropouts (q): --only=faults."""
    f = grid.faults
    for seed in f.seeds:
      for q in f.agent_dropouts:
        for p in f.link_failures:
          c = base("mnist", seed, grid.num_agents)
          c.data.partition, c.train.iterations = "classes", f.iterations
          c.eval.eval_every = f.eval_every
          c.train.log_every = max(1, min(50, f.iterations // 10))
          c.train.checkpoint_every = c.train.sample_every = max(1, f.iterations // 4)
          c.topology.link_failure, c.topology.agent_dropout = p, q
          out.append((f"faults/p{p}/q{q}/seed{seed}", "faults", c))

  # Seed-major order, Theorem 1 after the first seed: a grid stopped part-way already has one
  # seed of every cell and the Theorem 1 sweep.
  homogeneous_and_noniid(grid.seeds[0])
  theorem1()
  theorem1_warm()
  for seed in grid.seeds[1:]:
    homogeneous_and_noniid(seed)
  faults()
  return out


def _complete(workdir, iterations):
  path = os.path.join(workdir, "run.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return json.load(f).get("iterations", 0) >= iterations


def _read_jsonl(path):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def run_grid(grid, results_dir, quick=False, only=(), log=print):
  """Trains every incomplete cell (those whose names start with a prefix in ``only``, if given),
  then writes results.json and the figures from every complete cell."""
  from tfdiffgan import run as run_lib  # pylint: disable=g-import-not-at-top
  if quick:
    grid = _apply_quick(grid)
  todo = cells(grid, results_dir)
  timings = {}
  for i, (name, group, config) in enumerate(todo):
    workdir = os.path.join(results_dir, "runs", name)
    if _complete(workdir, config.train.iterations):
      log(f"[reproduce] {i + 1}/{len(todo)} {name}: complete, skipped")
      continue
    if only and not any(name.startswith(prefix) for prefix in only):
      log(f"[reproduce] {i + 1}/{len(todo)} {name}: not in --only, left for another invocation")
      continue
    log(f"[reproduce] {i + 1}/{len(todo)} {name}")
    t0 = time.time()
    run_lib.train_and_evaluate(config, workdir)
    timings[name] = time.time() - t0
  results = collect(todo, results_dir)
  results["settings"] = json.loads(grid.to_json())
  results["quick"] = quick
  results["seconds_this_invocation"] = timings
  with open(os.path.join(results_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  results["figures"] = figures(results, results_dir)
  with open(os.path.join(results_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(results_dir, "results.md"), "w") as f:
    f.write(markdown(results))
  return results


def collect(todo, results_dir):
  """Gathers every cell's curves and final metrics into one JSON-able dict."""
  runs = {}
  for name, group, config in todo:
    workdir = os.path.join(results_dir, "runs", name)
    if group == "warmup" or not _complete(workdir, config.train.iterations):
      continue  # not run yet (a partial grid): left out of results, figures and claims
    with open(os.path.join(workdir, "run.json")) as f:
      record = json.load(f)
    final_path = os.path.join(workdir, "metrics.json")
    final = json.load(open(final_path)) if os.path.exists(final_path) else None
    runs[name] = {
        "group": group, "mode": config.train.mode, "dataset": config.data.name,
        "partition": config.data.partition, "seed": config.seed,
        "graph": config.topology.graph, "mu": config.train.learning_rate,
        "link_failure": config.topology.get("link_failure", 0.0),
        "agent_dropout": config.topology.get("agent_dropout", 0.0),
        "final_disagreement": [record.get("disagreement_discriminator"),
                               record.get("disagreement_generator")],
        "lambda_2": record["lambda_2"], "train_seconds": record["train_seconds"],
        "spectral_factor": topology.spectral_factor(record["combination_matrix"]),
        "parameters_sent_per_iteration": record["parameters_sent_per_iteration"],
        "fid_curve": [(m["iteration"], m["network"]["fid_mean"], m["network"]["fid_min"],
                       m["network"]["fid_max"])
                      for m in _read_jsonl(os.path.join(workdir, "metrics.jsonl"))],
        "disagreement_curve": [(l["iteration"], l["disagreement_discriminator"])
                               for l in _read_jsonl(os.path.join(workdir, "log.jsonl"))],
        "final": None if final is None else {
            "network": final["network"],
            "agents": [{k: a[k] for k in ("fid", "kid", "kid_se", "coverage", "class_histogram",
                                          "check_class_histogram", "robust_coverage") if k in a}
                       for a in final["agents"]]},
        "samples": os.path.relpath(os.path.join(workdir, "samples", "agent_0.png"), results_dir),
    }
  summary = summarize(runs)
  return {"runs": runs, "summary": summary, "claims": claims(runs, summary)}


def weakest_share(agent):
  """An agent's smallest class share as both classifiers read it (the smaller of the two per
  class), or as the main one does for results scored before the check classifier existed."""
  hist = np.asarray(agent["class_histogram"], np.float64)
  if "check_class_histogram" in agent:
    hist = np.minimum(hist, agent["check_class_histogram"])
  return float(hist.min())


def agent_coverage(agent):
  """Classes both classifiers give 5% or more (the main one alone for older results)."""
  return agent.get("robust_coverage", agent["coverage"])


def summarize(runs):
  """Per (dataset, partition, mode): final FID/KID/coverage mean over seeds; Theorem 1 fits."""
  table = {}
  for r in runs.values():
    if r["group"] in APART or r["final"] is None:
      continue
    key = f"{r['dataset']}/{r['partition']}/{r['mode']}"
    table.setdefault(key, []).append(r)
  summary = {"final": {}, **{g: {} for g in THEOREM1_GROUPS}}
  for key, rs in sorted(table.items()):
    net = [r["final"]["network"] for r in rs]
    agent0 = [r["final"]["agents"][0] for r in rs]
    summary["final"][key] = {
        "seeds": len(rs),
        "fid_mean": float(np.mean([n["fid_mean"] for n in net])),
        "fid_seed_std": float(np.std([n["fid_mean"] for n in net])),
        "kid_mean": float(np.mean([n["kid_mean"] for n in net])),
        "coverage_mean": float(np.mean([n["coverage_mean"] for n in net])),
        "coverage_min": float(np.min([n["coverage_min"] for n in net])),
        "agent0_histogram": np.mean([a["class_histogram"] for a in agent0], axis=0).tolist(),
        "parameters_sent_per_iteration": rs[0]["parameters_sent_per_iteration"],
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])),
    }
  for group in THEOREM1_GROUPS:
    summary[group] = _theorem1_fits([r for r in runs.values() if r["group"] == group])
  summary["faults"] = _faults_table([r for r in runs.values() if r["group"] == "faults"])
  return summary


def _faults_table(runs):
  """Per (p, q): final FID per agent, the weakest class share, disagreement, messages."""
  table = {}
  for r in sorted(runs, key=lambda r: (r["agent_dropout"], r["link_failure"], r["seed"])):
    if r["final"] is None:
      continue
    agents = r["final"]["agents"]
    table.setdefault(f"p{r['link_failure']}/q{r['agent_dropout']}", []).append({
        "link_failure": r["link_failure"], "agent_dropout": r["agent_dropout"], "seed": r["seed"],
        "fid_per_agent": [a["fid"] for a in agents],
        "fid_mean": r["final"]["network"]["fid_mean"],
        "weakest_class_share": min(weakest_share(a) for a in agents),
        "coverage_per_agent": [agent_coverage(a) for a in agents],
        "disagreement": r["final_disagreement"], "lambda_2": r["lambda_2"],
        "parameters_sent_per_iteration": r["parameters_sent_per_iteration"]})
  return table


def faults_claim(table, p=0.3, tolerance=0.15):
  """At link failure p (no dropout) every agent still draws all ten digits (each >= 5% of its
  samples) and the mean FID stays within ``tolerance`` of p = 0 (Zhao & Sayed 2015 predict a
  graceful O(mu) degradation). None without both runs."""
  base, test = table.get("p0.0/q0.0"), table.get(f"p{p}/q0.0")
  if not base or not test:
    return None
  fid0 = float(np.mean([r["fid_mean"] for r in base]))
  fid = float(np.mean([r["fid_mean"] for r in test]))
  all_digits = all(min(r["coverage_per_agent"]) == 10 for r in test)
  return {"fid_p0": fid0, f"fid_p{p}": fid, "ratio": fid / fid0,
          "weakest_class_share": min(r["weakest_class_share"] for r in test),
          "every_agent_all_ten_digits": all_digits,
          "holds": bool(all_digits and fid / fid0 <= 1 + tolerance)}


def _theorem1_fits(runs):
  """Per graph: steady disagreement of D (mean of the second half of its curve) for each mu, and
  the least-squares slope of log disagreement against log mu (Theorem 1 predicts 2)."""
  by_graph, fits = {}, {}
  for r in runs:
    if not r["disagreement_curve"]:
      continue
    curve = np.array([d for _, d in r["disagreement_curve"]], np.float64)
    steady = float(np.mean(curve[len(curve) // 2:]))  # after the transient
    by_graph.setdefault(r["graph"], []).append((r["mu"], steady, r["lambda_2"],
                                                 r.get("spectral_factor")))
  for graph, pts in sorted(by_graph.items()):
    pts.sort()
    mus, dis = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    lam = pts[0][2]
    # lambda_2 = 0 (complete graph, Metropolis = 11^T/K): every combine averages exactly, the
    # disagreement is rounding error and has no slope to fit (Theorem 1 predicts 0).
    ok = dis > 0
    slope = (float(np.polyfit(np.log(mus[ok]), np.log(dis[ok]), 1)[0])
             if ok.sum() >= 2 and lam > 1e-6 else None)
    fits[graph] = {
        "mu": mus.tolist(), "disagreement": dis.tolist(), "lambda_2": lam,
        "lambda_factor": lam ** 2 / (1 - lam) ** 2 if lam < 1 else None,
        "spectral_factor": pts[0][3], "slope": slope}
  return fits


def claims(runs, summary):
  """The paper's three claims as measured numbers (issue text, docs/RESULTS.md). Each entry has
  the figures and a verdict; a claim without the runs it needs is None, not False."""
  fin, out = summary["final"], {}
  per_dataset = {}
  for ds in sorted({r["dataset"] for r in runs.values() if r["group"] not in APART}):
    c = {}
    cen, dif = fin.get(f"{ds}/iid/centralized"), fin.get(f"{ds}/iid/diffusion")
    non = fin.get(f"{ds}/iid/noncooperative")
    if cen and dif and non:
      ratio = dif["fid_mean"] / cen["fid_mean"]
      c["homogeneous"] = {
          "fid_diffusion": dif["fid_mean"], "fid_centralized": cen["fid_mean"],
          "fid_noncooperative": non["fid_mean"], "diffusion_over_centralized": ratio,
          "noncooperative_over_diffusion": non["fid_mean"] / dif["fid_mean"],
          "holds": bool(ratio <= 1.10 and non["fid_mean"] > dif["fid_mean"])}
    agents = {mode: [a for r in runs.values() if r["group"] == "noniid" and r["dataset"] == ds
                     and r["mode"] == mode and r["final"] for a in r["final"]["agents"]]
              for mode in ("diffusion", "noncooperative")}
    agent0_non = [r["final"]["agents"][0]["class_histogram"] for r in runs.values()
                  if r["group"] == "noniid" and r["dataset"] == ds
                  and r["mode"] == "noncooperative" and r["final"]]
    if agents["diffusion"] and agent0_non:
      # robust: a class counts only when both feature classifiers give it >= 5%
      min_share = min(weakest_share(a) for a in agents["diffusion"])
      own = [float(h[0] + h[1]) for h in agent0_non]
      c["nonhomogeneous"] = {
          "classifiers": ("main and check" if all("check_class_histogram" in a
                                                   for a in agents["diffusion"]) else "main"),
          "diffusion_min_class_share_over_agents_and_seeds": min_share,
          "diffusion_agents_at_least_5pct_each_class": int(sum(
              weakest_share(a) >= 0.05 for a in agents["diffusion"])),
          "diffusion_agents": len(agents["diffusion"]),
          "noncooperative_agent0_share_in_own_two_classes": own,
          "holds": bool(min_share >= 0.05 and min(own) >= 0.90)}
    per_dataset[ds] = c
  out["per_dataset"] = per_dataset
  if summary.get("faults"):
    out["faults"] = faults_claim(summary["faults"])
  for group in THEOREM1_GROUPS:
    th = summary.get(group)
    if not th:
      continue
    slopes = {g: v["slope"] for g, v in th.items() if v["lambda_2"] > 1e-6}
    # grows with lambda_2: at every mu, order of disagreement across graphs follows lambda_2
    graphs = sorted(th, key=lambda g: th[g]["lambda_2"])
    monotone = [all(th[a]["disagreement"][i] <= th[b]["disagreement"][i]
                    for a, b in zip(graphs, graphs[1:]))
                for i in range(len(th[graphs[0]]["mu"]))]
    out[group] = {
        "slopes": slopes, "graphs_by_lambda_2": graphs,
        "monotone_in_lambda_2_at_each_mu": monotone,
        "holds": bool(all(s is not None and abs(s - 2) <= 0.5 for s in slopes.values())
                      and all(monotone))}
  return out


def markdown(results):
  """The table of final metrics per mode, the wall times and the Theorem 1 fits, as Markdown
  (docs/RESULTS.md quotes it)."""
  fin, runs = results["summary"]["final"], results["runs"]
  lines = ["| dataset / shards / mode | seeds | FID (mean over agents) | +- over seeds | KID "
           "| coverage mean (min) | parameters sent / iteration | train s / run |",
           "|---|---|---|---|---|---|---|---|"]
  for key, v in fin.items():
    lines.append(f"| {key} | {v['seeds']} | {v['fid_mean']:.2f} | {v['fid_seed_std']:.2f} | "
                 f"{v['kid_mean']:.2f} | {v['coverage_mean']:.1f} ({v['coverage_min']:.0f}) | "
                 f"{int(v['parameters_sent_per_iteration']):,} | {v['train_seconds_mean']:.0f} |")
  for group in THEOREM1_GROUPS:
    th = results["summary"].get(group)
    if not th:
      continue
    mus = next(iter(th.values()))["mu"]
    lines += ["", f"{group}:", "", "| graph | lambda_2 | lambda_2^2/(1-lambda_2)^2 | "
              "sum_j lambda_j^2/(1-lambda_j^2) | " +
              " | ".join(f"D disagreement, mu={m}" for m in mus) + " | slope in log mu |",
              "|---" * (5 + len(mus)) + "|"]
    for g, v in th.items():
      lam = "inf" if v["lambda_factor"] is None else f"{v['lambda_factor']:.2f}"
      spec = "-" if v.get("spectral_factor") is None else f"{v['spectral_factor']:.3f}"
      lines.append(f"| {g} | {v['lambda_2']:.3f} | {lam} | {spec} | " +
                   " | ".join(f"{d:.3g}" for d in v["disagreement"]) +
                   f" | {v['slope'] if v['slope'] is None else round(v['slope'], 2)} |")
  faults = results["summary"].get("faults")
  if faults:
    lines += ["", "faults (main job; p: link failure, q: agent dropout):", "",
              "| p | q | FID per agent | mean | weakest class share | disagreement D / G "
              "| lambda_2 (mean-square) | parameters sent / iteration |", "|---" * 8 + "|"]
    for rows in faults.values():
      for v in rows:
        lines.append(
            f"| {v['link_failure']} | {v['agent_dropout']} | "
            + " ".join(f"{x:.1f}" for x in v["fid_per_agent"]) + f" | {v['fid_mean']:.2f} | "
            f"{v['weakest_class_share']:.3f} | {v['disagreement'][0]:.3g} / "
            f"{v['disagreement'][1]:.3g} | {v['lambda_2']:.3f} | "
            f"{int(v['parameters_sent_per_iteration']):,} |")
  groups = {}
  for r in runs.values():
    groups[r["group"]] = groups.get(r["group"], 0.0) + r["train_seconds"]
  lines += ["", "Wall time by part (seconds summed over runs: training loop with its periodic evaluations, final evaluation excluded): " +
            ", ".join(f"{g} {s:.0f}" for g, s in sorted(groups.items()))]
  return "\n".join(lines) + "\n"


def figures(results, results_dir):
  """Figs. 3-6 and the Theorem 1 plots as PNGs; returns their paths (relative)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  runs, paths = results["runs"], []

  def save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(results_dir, name), dpi=110)
    plt.close(fig)
    paths.append(name)

  datasets = sorted({r["dataset"] for r in runs.values() if r["group"] not in APART})
  for ds in datasets:
    # Fig. 3: FID against iterations, mean over agents (line) and agent spread (band)
    fig, ax = plt.subplots(figsize=(6, 4))
    modes = sorted({r["mode"] for r in runs.values()
                    if r["dataset"] == ds and r["group"] == "homogeneous"})
    for mode in modes:
      curves = [np.array(r["fid_curve"]) for r in runs.values() if r["dataset"] == ds and
                r["group"] == "homogeneous" and r["mode"] == mode and r["fid_curve"]]
      if not curves:
        continue
      n = min(len(c) for c in curves)
      c = np.mean([c[:n] for c in curves], axis=0)
      ax.plot(c[:, 0], c[:, 1], label=mode)
      ax.fill_between(c[:, 0], c[:, 2], c[:, 3], alpha=0.2)
    ax.set(xlabel="iteration", ylabel="FID (project classifier)", yscale="log",
           title=f"Fig. 3: homogeneous {ds}")
    ax.legend()
    save(fig, f"fig3_{ds}.png")
    # Figs. 4-5: agent 0's sample grid per mode (seed 0)
    fig, axes = plt.subplots(1, len(modes), figsize=(3 * len(modes), 3.3))
    for ax, mode in zip(np.atleast_1d(axes), modes):
      r = next(r for r in runs.values() if r["dataset"] == ds and r["group"] == "homogeneous"
               and r["mode"] == mode)
      ax.imshow(plt.imread(os.path.join(results_dir, r["samples"])), cmap="gray")
      ax.set_title(mode)
      ax.axis("off")
    save(fig, f"fig45_{ds}.png")
    # Fig. 6: the agent holding only classes {0, 1}, diffusion vs non-cooperative
    noniid = [r for r in runs.values() if r["dataset"] == ds and r["group"] == "noniid"
              and r["seed"] == min(x["seed"] for x in runs.values())]
    if noniid:
      fig, axes = plt.subplots(2, len(noniid), figsize=(3.6 * len(noniid), 6.4), squeeze=False)
      for j, r in enumerate(sorted(noniid, key=lambda r: r["mode"])):
        axes[0, j].imshow(plt.imread(os.path.join(results_dir, r["samples"])), cmap="gray")
        own = "{T-shirt, trouser}" if ds == "fashion_mnist" else "{0, 1}"
        axes[0, j].set_title(f"{r['mode']}: agent 0 saw {own}")
        axes[0, j].axis("off")
        if r["final"]:
          axes[1, j].bar(range(10), r["final"]["agents"][0]["class_histogram"])
          axes[1, j].axhline(0.05, color="gray", ls="--", lw=0.8)
        axes[1, j].set(xticks=range(10), xlabel="class (project classifier)",
                       ylabel="share of samples")
      save(fig, f"fig6_{ds}.png")
  # quality against communication
  fin = results["summary"]["final"]
  if fin:
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, v in fin.items():
      if "/iid/" in key and v["parameters_sent_per_iteration"] is not None:
        ax.scatter(max(v["parameters_sent_per_iteration"], 1), v["fid_mean"])
        ax.annotate(key, (max(v["parameters_sent_per_iteration"], 1), v["fid_mean"]), fontsize=7)
    ax.set(xscale="log", xlabel="parameters sent per iteration (1 = none)", ylabel="final FID",
           title="quality against communication")
    save(fig, "communication.png")
  # Theorem 1, from scratch and from the common warm start
  for group in THEOREM1_GROUPS:
    th = results["summary"].get(group)
    if not th:
      continue
    start = "from scratch" if group == "theorem1" else "from one trained state"
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for graph, v in th.items():
      slope = float("nan") if v["slope"] is None else v["slope"]
      a1.loglog(v["mu"], v["disagreement"], "o-",
                label=f"{graph} (lambda_2={v['lambda_2']:.2f}, slope {slope:.2f})")
    mus = np.array(next(iter(th.values()))["mu"])
    ref = max(v["disagreement"][-1] for v in th.values())
    a1.loglog(mus, ref * (mus / mus[-1]) ** 2, "k:", lw=0.8, label="slope 2")
    a1.set(xlabel="mu", ylabel="disagreement of D after the transient",
           title=f"Theorem 1 ({start}): vs mu")
    a1.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a1.set_xticks(mus, [str(m) for m in mus])
    a1.legend(fontsize=7)
    for i, mu in enumerate(mus):
      pts = [(v["lambda_factor"], v["disagreement"][i]) for v in th.values()
             if v["lambda_factor"] is not None and v["lambda_2"] > 1e-6]
      a2.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=f"mu={mu}")
    a2.set(xlabel="lambda_2^2 / (1 - lambda_2)^2", ylabel="disagreement", yscale="log",
           title="vs the graph factor (complete graph: 0)")
    a2.legend(fontsize=7)
    save(fig, f"{group}.png")
  return paths
