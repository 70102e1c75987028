"""What the runs say: per-mode summaries, the Theorem 1 fits, the faults table and the paper's
claims as measured numbers, each with a verdict.

Pure functions of the cells' records (run.cell_record), so they are tested on synthetic records.
A claim without the runs it needs is None (or absent), never False.
"""

import numpy as np

from tfdiffgan.reproduce.grid import APART, THEOREM1_GROUPS


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


def _final_row(rs):
  """One (dataset, partition, mode): final metrics, mean (and spread) over its seeds."""
  net = [r["final"]["network"] for r in rs]
  agent0 = [r["final"]["agents"][0] for r in rs]
  return {
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


def summarize(runs):
  """Per (dataset, partition, mode): final FID/KID/coverage mean over seeds; Theorem 1 fits;
  the faults table."""
  table = {}
  for r in runs.values():
    if r["group"] in APART or r["final"] is None:
      continue
    table.setdefault(f"{r['dataset']}/{r['partition']}/{r['mode']}", []).append(r)
  summary = {"final": {key: _final_row(rs) for key, rs in sorted(table.items())}}
  for group in THEOREM1_GROUPS:
    summary[group] = theorem1_fits([r for r in runs.values() if r["group"] == group])
  summary["faults"] = faults_table([r for r in runs.values() if r["group"] == "faults"])
  return summary


def faults_table(runs):
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


def steady_disagreement(curve):
  """The disagreement after the transient: the mean of the second half of the curve."""
  d = np.array([d for _, d in curve], np.float64)
  return float(np.mean(d[len(d) // 2:]))


def log_slope(mus, disagreements, lambda_2):
  """The least-squares slope of log disagreement against log mu (Theorem 1 predicts 2).

  None when lambda_2 = 0 (complete graph, Metropolis = 11^T/K): every combine averages exactly,
  the disagreement is rounding error and has no slope to fit (Theorem 1 predicts 0)."""
  mus, dis = np.asarray(mus), np.asarray(disagreements)
  ok = dis > 0
  if ok.sum() < 2 or lambda_2 <= 1e-6:
    return None
  return float(np.polyfit(np.log(mus[ok]), np.log(dis[ok]), 1)[0])


def theorem1_fits(runs):
  """Per graph: the steady disagreement of D for each mu, lambda_2, the graph factors and the
  slope in log mu."""
  by_graph = {}
  for r in runs:
    if r["disagreement_curve"]:
      by_graph.setdefault(r["graph"], []).append(
          (r["mu"], steady_disagreement(r["disagreement_curve"]), r["lambda_2"],
           r.get("spectral_factor")))
  fits = {}
  for graph, pts in sorted(by_graph.items()):
    pts.sort()
    mus, dis = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    lam = pts[0][2]
    fits[graph] = {
        "mu": mus.tolist(), "disagreement": dis.tolist(), "lambda_2": lam,
        "lambda_factor": lam ** 2 / (1 - lam) ** 2 if lam < 1 else None,
        "spectral_factor": pts[0][3], "slope": log_slope(mus, dis, lam)}
  return fits


def homogeneous_claim(final, dataset):
  """Diffusion within 10% of the centralized FID, non-cooperative worse than diffusion."""
  cen, dif = final.get(f"{dataset}/iid/centralized"), final.get(f"{dataset}/iid/diffusion")
  non = final.get(f"{dataset}/iid/noncooperative")
  if not (cen and dif and non):
    return None
  ratio = dif["fid_mean"] / cen["fid_mean"]
  return {
      "fid_diffusion": dif["fid_mean"], "fid_centralized": cen["fid_mean"],
      "fid_noncooperative": non["fid_mean"], "diffusion_over_centralized": ratio,
      "noncooperative_over_diffusion": non["fid_mean"] / dif["fid_mean"],
      "holds": bool(ratio <= 1.10 and non["fid_mean"] > dif["fid_mean"])}


def _noniid_runs(runs, dataset, mode):
  return [r for r in runs.values() if r["group"] == "noniid" and r["dataset"] == dataset
          and r["mode"] == mode and r["final"]]


def nonhomogeneous_claim(runs, dataset):
  """With two classes per agent, every diffusion agent draws every class (>= 5% by both
  classifiers), while the non-cooperative agent 0 draws almost only its own two (>= 90%)."""
  agents = [a for r in _noniid_runs(runs, dataset, "diffusion") for a in r["final"]["agents"]]
  agent0_non = [r["final"]["agents"][0]["class_histogram"]
                for r in _noniid_runs(runs, dataset, "noncooperative")]
  if not (agents and agent0_non):
    return None
  min_share = min(weakest_share(a) for a in agents)
  own = [float(h[0] + h[1]) for h in agent0_non]
  return {
      "classifiers": ("main and check" if all("check_class_histogram" in a for a in agents)
                      else "main"),
      "diffusion_min_class_share_over_agents_and_seeds": min_share,
      "diffusion_agents_at_least_5pct_each_class": int(sum(
          weakest_share(a) >= 0.05 for a in agents)),
      "diffusion_agents": len(agents),
      "noncooperative_agent0_share_in_own_two_classes": own,
      "holds": bool(min_share >= 0.05 and min(own) >= 0.90)}


def theorem1_claim(fits):
  """Slope 2 in log mu (within 0.5) on every graph with lambda_2 > 0, and at every mu the
  disagreement growing with lambda_2 across graphs."""
  slopes = {g: v["slope"] for g, v in fits.items() if v["lambda_2"] > 1e-6}
  graphs = sorted(fits, key=lambda g: fits[g]["lambda_2"])
  monotone = [all(fits[a]["disagreement"][i] <= fits[b]["disagreement"][i]
                  for a, b in zip(graphs, graphs[1:]))
              for i in range(len(fits[graphs[0]]["mu"]))]
  return {
      "slopes": slopes, "graphs_by_lambda_2": graphs,
      "monotone_in_lambda_2_at_each_mu": monotone,
      "holds": bool(all(s is not None and abs(s - 2) <= 0.5 for s in slopes.values())
                    and all(monotone))}


def claims(runs, summary):
  """The paper's three claims as measured numbers (docs/RESULTS.md): per dataset, the
  homogeneous and the nonhomogeneous one; the faults claim; Theorem 1 per sweep."""
  per_dataset = {}
  for ds in sorted({r["dataset"] for r in runs.values() if r["group"] not in APART}):
    c = {"homogeneous": homogeneous_claim(summary["final"], ds),
         "nonhomogeneous": nonhomogeneous_claim(runs, ds)}
    per_dataset[ds] = {k: v for k, v in c.items() if v is not None}
  out = {"per_dataset": per_dataset}
  if summary.get("faults"):
    out["faults"] = faults_claim(summary["faults"])
  for group in THEOREM1_GROUPS:
    if summary.get(group):
      out[group] = theorem1_claim(summary[group])
  return out
