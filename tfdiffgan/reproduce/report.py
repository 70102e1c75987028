"""The results as people read them: results.md (the tables docs/RESULTS.md quotes) and the
paper's Figs. 3-6 with the Theorem 1 plots as matplotlib PNGs in RESULTS_DIR.

Both read only the results dict (analysis.summarize, analysis.claims) and, for the sample grids,
the PNGs each run wrote; matplotlib is imported only when figures are drawn.
"""

import os

import numpy as np

from tfdiffgan.reproduce.grid import APART, THEOREM1_GROUPS


def _final_lines(final):
  lines = ["| dataset / shards / mode | seeds | FID (mean over agents) | +- over seeds | "
           "FID (pooled) | KID | coverage mean (min) | parameters sent / iteration | "
           "train s / run |", "|---|---|---|---|---|---|---|---|---|"]
  for key, v in final.items():
    pooled = "-" if v.get("pooled_fid_mean") is None else f"{v['pooled_fid_mean']:.2f}"
    lines.append(f"| {key} | {v['seeds']} | {v['fid_mean']:.2f} | {v['fid_seed_std']:.2f} | "
                 f"{pooled} | "
                 f"{v['kid_mean']:.2f} | {v['coverage_mean']:.1f} ({v['coverage_min']:.0f}) | "
                 f"{int(v['parameters_sent_per_iteration']):,} | {v['train_seconds_mean']:.0f} |")
  return lines


def _theorem1_lines(group, fits):
  mus = next(iter(fits.values()))["mu"]
  lines = ["", f"{group}:", "", "| graph | lambda_2 | lambda_2^2/(1-lambda_2)^2 | "
           "sum_j lambda_j^2/(1-lambda_j^2) | " +
           " | ".join(f"D disagreement, mu={m}" for m in mus) + " | slope in log mu |",
           "|---" * (5 + len(mus)) + "|"]
  for g, v in fits.items():
    lam = "inf" if v["lambda_factor"] is None else f"{v['lambda_factor']:.2f}"
    spec = "-" if v.get("spectral_factor") is None else f"{v['spectral_factor']:.3f}"
    lines.append(f"| {g} | {v['lambda_2']:.3f} | {lam} | {spec} | " +
                 " | ".join(f"{d:.3g}" for d in v["disagreement"]) +
                 f" | {v['slope'] if v['slope'] is None else round(v['slope'], 2)} |")
  return lines


def _faults_lines(faults):
  lines = ["", "faults (main job; p: link failure, q: agent dropout):", "",
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
  return lines


def _cell_lines(runs):
  """One row per finished training cell: its wall time (training, evaluations and start-up,
  as its summary recorded it), every agent's FID, the pooled FID and KID (with the standard
  error of ten disjoint subsets) and the smallest class share of any agent by each classifier."""
  lines = ["", "| cell | wall | FID: agents' mean (min-max) | FID pooled | KID pooled +- se | "
           "smallest class share, main / check |", "|---|---|---|---|---|---|"]
  total = 0.0
  for name, r in sorted(runs.items()):
    final = r.get("final")
    if not final or r["group"].startswith("theorem1"):
      continue
    wall = r.get("wall_seconds")
    total += wall or 0.0
    agents, pooled, net = final["agents"], final.get("pooled", {}), final["network"]
    share = " / ".join(
        f"{100 * min(min(a[key]) for a in agents):.1f}%" if all(key in a for a in agents)
        else "-" for key in ("class_histogram", "check_class_histogram"))
    pooled_fid = f"{pooled['fid']:.2f}" if "fid" in pooled else "-"
    kid = f"{pooled['kid']:.3f} +- {pooled['kid_se']:.3f}" if "kid_se" in pooled else "-"
    fids = [a["fid"] for a in agents]
    wall_text = "-" if wall is None else f"{wall / 60:.1f} min"
    lines.append(f"| {name} | {wall_text} | {net['fid_mean']:.2f} ({min(fids):.2f}-"
                 f"{max(fids):.2f}) | {pooled_fid} | {kid} | {share} |")
  lines.append("")
  lines.append(f"Wall time of these cells: {total / 3600:.2f} h (each as its run measured it, "
               "cells that shared the cores included).")
  return lines


def _verdict(v):
  return "-" if v is None else ("**holds**" if v else "**fails**")


def _claims_lines(claims):
  """The claims against their bars, per dataset: numbers, seeds, verdict."""
  lines = ["| claim | dataset | bar | numbers (mean over seeds; per seed) | seeds | verdict |",
           "|---|---|---|---|---|---|"]
  for ds, c in sorted(claims.get("per_dataset", {}).items()):
    h = c.get("homogeneous")
    if h:
      nums = "; ".join(
          f"{label}: diffusion {v['diffusion']:.2f} / centralized {v['centralized']:.2f} "
          f"(x{v['diffusion_over_centralized']:.3f}) / non-coop. {v['noncooperative']:.2f}"
          for label, v in (("per-agent mean", h["per_agent_mean"]), ("pooled", h.get("pooled")))
          if v)
      nums += "; per seed: " + ", ".join(
          f"{mode} " + " / ".join(f"{x:.2f}" for x in xs) for mode, xs in h["per_seed"].items())
      lines.append(f"| (i) homogeneous | {ds} | {h['bar']} | {nums} | {h['seeds']} | "
                   f"{_verdict(h['holds'])} |")
    n = c.get("nonhomogeneous")
    if n:
      nums = (f"weakest class share of any diffusion agent "
              f"{n['diffusion_min_class_share_over_agents_and_seeds']:.3f} (per seed: "
              + ", ".join(f"{x:.3f}" for x in n["diffusion_min_class_share_per_seed"].values())
              + "); non-coop. agent 0 in its two classes (per seed): "
              + ", ".join(f"{x:.3f}" for x in n["noncooperative_agent0_share_in_own_two_classes"]))
      lines.append(f"| (ii) two classes per agent | {ds} | {n['bar']} ({n['classifiers']}) | "
                   f"{nums} | {len(n['seeds'])} | {_verdict(n['holds'])} |")
  for group in THEOREM1_GROUPS:
    t = claims.get(group)
    if t:
      slopes = ", ".join(f"{g} " + ("-" if v is None else f"{v:.2f}")
                         for g, v in t["slopes"].items())
      monotone = ", ".join(f"mu {mu:g} {'yes' if ok else 'no'}" for mu, ok in
                           zip(t["mu"], t["monotone_in_lambda_2_at_each_mu"]))
      lines.append(f"| (iii) Theorem 1 ({group}) | mnist | {t['bar']} | slopes in log mu: "
                   f"{slopes}; growing with lambda_2: {monotone} | 1 | "
                   f"{_verdict(t['holds'])} |")
  v = claims.get("verdicts", {})
  lines.append("")
  lines.append("Over both datasets: " + ", ".join(
      f"{k} {_verdict(x['holds'])}" + (f" (missing {', '.join(x['missing'])})"
                                       if x["missing"] else "") for k, x in v.items()))
  return lines + [""]


def markdown(results):
  """The claims against their bars, the table of final metrics per mode, the Theorem 1 fits,
  the faults table and the wall times, as Markdown (docs/RESULTS.md quotes it)."""
  summary = results["summary"]
  lines = _claims_lines(results["claims"]) if results.get("claims", {}).get("per_dataset") else []
  lines += _final_lines(summary["final"])
  for group in THEOREM1_GROUPS:
    if summary.get(group):
      lines += _theorem1_lines(group, summary[group])
  if summary.get("faults"):
    lines += _faults_lines(summary["faults"])
  lines += _cell_lines(results["runs"])
  return "\n".join(lines) + "\n"


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(plt, fig, results_dir, name):
  fig.tight_layout()
  fig.savefig(os.path.join(results_dir, name), dpi=110)
  plt.close(fig)
  return name


def _homogeneous(runs, ds, mode=None):
  return [r for r in runs.values() if r["dataset"] == ds and r["group"] == "homogeneous"
          and (mode is None or r["mode"] == mode)]


def fid_band(runs):
  """Per iteration: the mean FID over every agent of every run, and its min and max (Fig. 3's
  band over agents and seeds); from the mean/min/max curve for records without agents' FIDs."""
  pts = {}
  for r in runs:
    agents = [(it, fids) for it, fids in r.get("fid_curve_agents") or [] if fids]
    for it, fids in agents or [(it, [mean, lo, hi]) for it, mean, lo, hi in r["fid_curve"]]:
      pts.setdefault(it, []).extend(fids)
  its = sorted(pts)
  return (np.array(its), np.array([np.mean(pts[i]) for i in its]),
          np.array([np.min(pts[i]) for i in its]), np.array([np.max(pts[i]) for i in its]))


def pooled_curve(runs):
  """Per iteration: the pooled FID, mean over seeds (empty without pooled scores)."""
  pts = {}
  for r in runs:
    for it, fid in r.get("fid_curve_pooled") or []:
      pts.setdefault(it, []).append(fid)
  its = sorted(pts)
  return np.array(its), np.array([np.mean(pts[i]) for i in its])


# One color per mode in every figure, so Fig. 3 and the communication panels read together.
MODE_COLORS = {"centralized": "C0", "diffusion": "C1", "noncooperative": "C2", "gossip": "C3",
               "fusion": "C4"}


def _color(mode, i):
  return MODE_COLORS.get(mode, f"C{5 + i}")


def fig3(plt, runs, ds, modes):
  """FID against iterations per mode: the mean over agents and seeds (line), its range over
  agents and seeds (band) and the pooled samples' FID (dashed, where scored)."""
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for i, mode in enumerate(modes):
    rs = [r for r in _homogeneous(runs, ds, mode) if r["fid_curve"]]
    if not rs:
      continue
    color = _color(mode, i)
    its, mean, lo, hi = fid_band(rs)
    seeds = len({r["seed"] for r in rs})
    ax.plot(its, mean, "o-", ms=3, color=color, label=f"{mode} ({seeds} seed{'s' * (seeds > 1)})")
    ax.fill_between(its, lo, hi, color=color, alpha=0.2)
    pits, pooled = pooled_curve(rs)
    if len(pits):
      ax.plot(pits, pooled, "--", color=color, lw=1)
  ax.plot([], [], "k--", lw=1, label="pooled samples")
  ax.set(xlabel="iteration", ylabel="FID (project classifier)", yscale="log",
         title=f"Fig. 3: homogeneous {ds} (band: agents and seeds)")
  ax.legend(fontsize=8)
  return fig


def fig45(plt, runs, ds, modes, results_dir):
  """Agent 0's sample grid per mode (the first run of each)."""
  fig, axes = plt.subplots(1, len(modes), figsize=(3 * len(modes), 3.3))
  for ax, mode in zip(np.atleast_1d(axes), modes):
    r = _homogeneous(runs, ds, mode)[0]
    ax.imshow(plt.imread(os.path.join(results_dir, r["samples"])), cmap="gray")
    ax.set_title(mode)
    ax.axis("off")
  return fig


def fig6(plt, noniid, ds, results_dir):
  """The agent holding only classes {0, 1}: its samples and class histogram per mode."""
  fig, axes = plt.subplots(2, len(noniid), figsize=(3.6 * len(noniid), 6.4), squeeze=False)
  own = "{T-shirt, trouser}" if ds == "fashion_mnist" else "{0, 1}"
  for j, r in enumerate(sorted(noniid, key=lambda r: r["mode"])):
    axes[0, j].imshow(plt.imread(os.path.join(results_dir, r["samples"])), cmap="gray")
    axes[0, j].set_title(f"{r['mode']}:\nagent 0 saw {own}", fontsize=10)
    axes[0, j].axis("off")
    if r["final"]:
      agent = r["final"]["agents"][0]
      hists = [("main", agent["class_histogram"])] + (
          [("check", agent["check_class_histogram"])] if "check_class_histogram" in agent else [])
      for h, (label, hist) in enumerate(hists):
        axes[1, j].bar(np.arange(10) + (h - (len(hists) - 1) / 2) * 0.4, hist,
                       width=0.4 if len(hists) > 1 else 0.8, label=f"{label} classifier")
      axes[1, j].axhline(0.05, color="gray", ls="--", lw=0.8)
      axes[1, j].set_ylim(0, 1.25 * max(max(h) for _, h in hists))  # room for the legend
      axes[1, j].legend(fontsize=7, ncol=2, loc="upper center")
    axes[1, j].set(xticks=range(10), xlabel="class", ylabel="share of agent 0's samples")
  return fig


def communication(plt, final):
  """Final FID against the parameters each iteration sends, per homogeneous mode, one panel per
  dataset (filled: the mean of per-agent FIDs; hollow: the pooled samples' FID). Linear in
  millions of parameters: the modes that send nothing sit at 0."""
  datasets = sorted({key.split("/")[0] for key in final if "/iid/" in key})
  fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
  for ax, ds in zip(axes[0], datasets):
    for i, (key, v) in enumerate((k, v) for k, v in final.items() if k.startswith(f"{ds}/iid/")):
      if v["parameters_sent_per_iteration"] is None:
        continue
      x, mode = v["parameters_sent_per_iteration"] / 1e6, key.split("/")[-1]
      color = _color(mode, i)
      ax.scatter(x, v["fid_mean"], color=color, label=mode)
      if v.get("pooled_fid_mean") is not None:
        ax.scatter(x, v["pooled_fid_mean"], facecolors="none", edgecolors=color)
    ax.set(xlabel="millions of parameters sent per iteration (0: none)",
           ylabel="final FID (filled: per-agent mean; hollow: pooled)",
           title=f"quality against communication: {ds}")
    ax.legend(fontsize=7)
  return fig


def _theorem1_vs_mu(ax, fits, start):
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  for graph, v in fits.items():
    slope = float("nan") if v["slope"] is None else v["slope"]
    ax.loglog(v["mu"], v["disagreement"], "o-",
              label=f"{graph} (lambda_2={v['lambda_2']:.2f}, slope {slope:.2f})")
  mus = np.array(next(iter(fits.values()))["mu"])
  ref = max(v["disagreement"][-1] for v in fits.values())
  ax.loglog(mus, ref * (mus / mus[-1]) ** 2, "k:", lw=0.8, label="slope 2")
  ax.set(xlabel="mu", ylabel="disagreement of D after the transient",
         title=f"Theorem 1 ({start}): vs mu")
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.set_xticks(mus, [str(m) for m in mus])
  ax.legend(fontsize=7)
  return mus


def theorem1_figure(plt, group, fits):
  """The disagreement against mu (log-log, slope 2 for reference) and against the graph factor."""
  start = "from scratch" if group == "theorem1" else "from one trained state"
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
  mus = _theorem1_vs_mu(a1, fits, start)
  for i, mu in enumerate(mus):
    pts = [(v["lambda_factor"], v["disagreement"][i]) for v in fits.values()
           if v["lambda_factor"] is not None and v["lambda_2"] > 1e-6]
    a2.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=f"mu={mu}")
  a2.set(xlabel="lambda_2^2 / (1 - lambda_2)^2", ylabel="disagreement", yscale="log",
         title="vs the graph factor (complete graph: 0)")
  a2.legend(fontsize=7)
  return fig


def _dataset_figures(plt, runs, ds, results_dir):
  """Figs. 3, 4-5 and 6 of one dataset; returns their names."""
  modes = sorted({r["mode"] for r in _homogeneous(runs, ds)})
  names = [_save(plt, fig3(plt, runs, ds, modes), results_dir, f"fig3_{ds}.png"),
           _save(plt, fig45(plt, runs, ds, modes, results_dir), results_dir, f"fig45_{ds}.png")]
  first_seed = min(x["seed"] for x in runs.values())
  noniid = [r for r in runs.values() if r["dataset"] == ds and r["group"] == "noniid"
            and r["seed"] == first_seed]
  if noniid:
    names.append(_save(plt, fig6(plt, noniid, ds, results_dir), results_dir, f"fig6_{ds}.png"))
  return names


def figures(results, results_dir):
  """Figs. 3-6, quality against communication and the Theorem 1 plots as PNGs in
  ``results_dir``; returns their names (relative paths)."""
  plt, runs, summary = _pyplot(), results["runs"], results["summary"]
  paths = []
  for ds in sorted({r["dataset"] for r in runs.values() if r["group"] not in APART}):
    paths += _dataset_figures(plt, runs, ds, results_dir)
  if summary["final"]:
    paths.append(_save(plt, communication(plt, summary["final"]), results_dir,
                       "communication.png"))
  for group in THEOREM1_GROUPS:
    if summary.get(group):
      paths.append(_save(plt, theorem1_figure(plt, group, summary[group]), results_dir,
                         f"{group}.png"))
  return paths
