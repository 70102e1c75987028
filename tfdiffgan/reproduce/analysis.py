"""What the runs say: per-mode summaries, the Theorem 1 fits, the faults table and the paper's
claims as measured numbers, each with a verdict.

Pure functions of the cells' records (run.cell_record), so they are tested on synthetic records.
A claim without the runs it needs is None (or absent), never False.

The bars, fixed before the grid on the tuned recipe ran (issue 24):
  (i)   homogeneous shards: diffusion's final FID at most FID_BAR x centralized's and below
        non-cooperative's, on every dataset, by the mean of per-agent FIDs AND by the FID of the
        pooled samples (each over seeds; each seed's numbers are reported beside the verdict);
  (ii)  two classes per agent: every diffusion agent of every seed gives each class at least
        CLASS_SHARE_BAR of its samples by both classifiers, and the non-cooperative agent 0
        gives its own two classes at least OWN_CLASSES_BAR, by both;
  (iii) Theorem 1: a slope of SLOPE (within SLOPE_TOLERANCE) of log disagreement in log mu on
        every graph with lambda_2 > 0, and the disagreement growing with lambda_2 at every mu.
"""

import numpy as np

from tfdiffgan.reproduce.grid import APART, THEOREM1_GROUPS

FID_BAR = 1.10          # (i) diffusion's FID within 10% of centralized's
CLASS_SHARE_BAR = 0.05  # (ii) every class at least 5% of a diffusion agent's samples
OWN_CLASSES_BAR = 0.90  # (ii) the non-cooperative agent 0: at least 90% in its own two classes
SLOPE, SLOPE_TOLERANCE = 2.0, 0.5  # (iii) disagreement = O(mu^2)


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
  pooled = [r["final"]["pooled"]["fid"] for r in rs if r["final"].get("pooled")]
  return {
      "seeds": len(rs),
      "seed_list": [r["seed"] for r in rs],
      "fid_mean": float(np.mean([n["fid_mean"] for n in net])),
      "fid_seed_std": float(np.std([n["fid_mean"] for n in net])),
      "fid_per_seed": [float(n["fid_mean"]) for n in net],
      # the FID of every agent's samples pooled (None for results scored before it existed)
      "pooled_fid_mean": float(np.mean(pooled)) if len(pooled) == len(rs) else None,
      "pooled_fid_per_seed": pooled if len(pooled) == len(rs) else None,
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


def _fid_bar(dif, cen, non):
  """Bar (i) on one reading of the FID (numbers: mean over seeds; per seed beside them)."""
  ratio = dif / cen
  return {"diffusion": dif, "centralized": cen, "noncooperative": non,
          "diffusion_over_centralized": ratio, "noncooperative_over_diffusion": non / dif,
          "holds": bool(ratio <= FID_BAR and non > dif)}


def homogeneous_claim(final, dataset):
  """Bar (i): diffusion within FID_BAR of the centralized FID and non-cooperative worse than
  diffusion, by the per-agent mean and, where scored, by the pooled FID (both must hold)."""
  cen, dif = final.get(f"{dataset}/iid/centralized"), final.get(f"{dataset}/iid/diffusion")
  non = final.get(f"{dataset}/iid/noncooperative")
  if not (cen and dif and non):
    return None
  mean = _fid_bar(dif["fid_mean"], cen["fid_mean"], non["fid_mean"])
  out = {
      "bar": f"diffusion FID <= {FID_BAR} x centralized and < non-cooperative",
      "fid_diffusion": dif["fid_mean"], "fid_centralized": cen["fid_mean"],
      "fid_noncooperative": non["fid_mean"],
      "diffusion_over_centralized": mean["diffusion_over_centralized"],
      "noncooperative_over_diffusion": mean["noncooperative_over_diffusion"],
      "per_agent_mean": mean,
      "per_seed": {m: v.get("fid_per_seed") for m, v in
                   (("diffusion", dif), ("centralized", cen), ("noncooperative", non))},
      "seed_std": {"diffusion": dif["fid_seed_std"], "centralized": cen["fid_seed_std"],
                   "noncooperative": non["fid_seed_std"]},
      "seeds": dif["seeds"]}
  holds = mean["holds"]
  if all(v.get("pooled_fid_mean") is not None for v in (cen, dif, non)):
    out["pooled"] = _fid_bar(dif["pooled_fid_mean"], cen["pooled_fid_mean"],
                             non["pooled_fid_mean"])
    out["pooled"]["per_seed"] = {m: v["pooled_fid_per_seed"] for m, v in
                                 (("diffusion", dif), ("centralized", cen),
                                  ("noncooperative", non))}
    holds = holds and out["pooled"]["holds"]
  out["holds"] = bool(holds)
  return out


def _noniid_runs(runs, dataset, mode):
  return [r for r in runs.values() if r["group"] == "noniid" and r["dataset"] == dataset
          and r["mode"] == mode and r["final"]]


def own_share(agent, classes=(0, 1)):
  """The share of an agent's samples in ``classes``, the smaller of the two classifiers'."""
  hists = [agent["class_histogram"]] + ([agent["check_class_histogram"]]
                                         if "check_class_histogram" in agent else [])
  return float(min(sum(h[c] for c in classes) for h in hists))


def nonhomogeneous_claim(runs, dataset):
  """Bar (ii): with two classes per agent, every diffusion agent draws every class (>=
  CLASS_SHARE_BAR by both classifiers), while the non-cooperative agent 0 draws almost only its
  own two (>= OWN_CLASSES_BAR by both)."""
  dif, non = _noniid_runs(runs, dataset, "diffusion"), _noniid_runs(runs, dataset, "noncooperative")
  agents = [a for r in dif for a in r["final"]["agents"]]
  if not (agents and non):
    return None
  min_share = min(weakest_share(a) for a in agents)
  own = [own_share(r["final"]["agents"][0]) for r in non]
  return {
      "bar": f"every diffusion agent >= {CLASS_SHARE_BAR:.0%} in each class; non-cooperative "
             f"agent 0 >= {OWN_CLASSES_BAR:.0%} in its own two (both classifiers)",
      "classifiers": ("main and check" if all("check_class_histogram" in a for a in agents)
                      else "main"),
      "diffusion_min_class_share_over_agents_and_seeds": min_share,
      "diffusion_min_class_share_per_seed": {
          r["seed"]: min(weakest_share(a) for a in r["final"]["agents"]) for r in dif},
      "diffusion_agents_at_least_5pct_each_class": int(sum(
          weakest_share(a) >= CLASS_SHARE_BAR for a in agents)),
      "diffusion_agents": len(agents),
      "noncooperative_agent0_share_in_own_two_classes": own,
      "seeds": sorted({r["seed"] for r in dif}),
      "holds": bool(min_share >= CLASS_SHARE_BAR and min(own) >= OWN_CLASSES_BAR)}


def theorem1_claim(fits):
  """Slope 2 in log mu (within 0.5) on every graph with lambda_2 > 0, and at every mu the
  disagreement growing with lambda_2 across graphs."""
  slopes = {g: v["slope"] for g, v in fits.items() if v["lambda_2"] > 1e-6}
  graphs = sorted(fits, key=lambda g: fits[g]["lambda_2"])
  monotone = [all(fits[a]["disagreement"][i] <= fits[b]["disagreement"][i]
                  for a, b in zip(graphs, graphs[1:]))
              for i in range(len(fits[graphs[0]]["mu"]))]
  return {
      "bar": f"slope {SLOPE} +- {SLOPE_TOLERANCE} on every graph with lambda_2 > 0; growing "
             "with lambda_2 at every mu",
      "slopes": slopes, "graphs_by_lambda_2": graphs, "mu": list(fits[graphs[0]]["mu"]),
      "monotone_in_lambda_2_at_each_mu": monotone,
      "holds": bool(all(s is not None and abs(s - SLOPE) <= SLOPE_TOLERANCE
                        for s in slopes.values()) and all(monotone))}


def verdicts(per_dataset, datasets=("mnist", "fashion_mnist")):
  """Claims (i) and (ii) over both datasets: True or False once every dataset has its runs,
  None (with the datasets missing) before."""
  out = {}
  for claim in ("homogeneous", "nonhomogeneous"):
    have = {ds: per_dataset.get(ds, {}).get(claim) for ds in datasets}
    missing = [ds for ds, v in have.items() if v is None]
    out[claim] = {"holds": None if missing else all(v["holds"] for v in have.values()),
                  "missing": missing,
                  "per_dataset": {ds: v["holds"] for ds, v in have.items() if v is not None}}
  return out


def claims(runs, summary):
  """The paper's three claims as measured numbers (docs/RESULTS.md): per dataset, the
  homogeneous and the nonhomogeneous one; the faults claim; Theorem 1 per sweep."""
  per_dataset = {}
  for ds in sorted({r["dataset"] for r in runs.values() if r["group"] not in APART}):
    c = {"homogeneous": homogeneous_claim(summary["final"], ds),
         "nonhomogeneous": nonhomogeneous_claim(runs, ds)}
    per_dataset[ds] = {k: v for k, v in c.items() if v is not None}
  out = {"per_dataset": per_dataset, "verdicts": verdicts(per_dataset)}
  if summary.get("faults"):
    out["faults"] = faults_claim(summary["faults"])
  for group in THEOREM1_GROUPS:
    if summary.get(group):
      out[group] = theorem1_claim(summary[group])
  return out
