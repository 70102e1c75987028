"""What to run: the cells of the grid, each a name, a group and an ordinary training config.

A grid config (tfdiffgan/configs/reproduce.py) names datasets, seeds, modes, the Theorem 1 sweep
and the faults sweep; ``cells`` turns it into the list of runs, in the order they are trained.
Every seed of a cell is the grid's own ``seed`` field (tfdiffgan/seeds.py derives each agent's
streams from it); nothing here derives another.
"""

import os
from typing import NamedTuple

import ml_collections

from tfdiffgan import data as data_lib
from tfdiffgan.configs import default as default_config

THEOREM1_GROUPS = ("theorem1", "theorem1_warm")  # from scratch; from one common trained state
APART = THEOREM1_GROUPS + ("faults",)  # groups kept out of the per-mode table of final metrics
BASELINES = ("fusion", "gossip")  # the works the paper cites, beside its own three modes
WARMUP = "theorem1_warm/warmup"  # complete graph: every agent leaves it with the same weights

_QUICK_FIELDS = ("datasets", "seeds", "num_agents", "width", "iterations", "eval_every",
                 "periodic_samples", "final_samples", "homogeneous_modes", "baseline_datasets")


class Cell(NamedTuple):
  """One run of the grid: its name (and workdir under RESULTS_DIR/runs/), group and config."""
  name: str
  group: str
  config: ml_collections.ConfigDict


def classes_for(num_agents):
  """Two classes for agent 0 ({0, 1}: zeros and ones, or T-shirts and trousers), the other eight
  dealt round-robin to the remaining agents (K = 5 gives the paper's two classes each)."""
  rest = [[] for _ in range(num_agents - 1)]
  for i, c in enumerate(range(2, data_lib.NUM_CLASSES)):
    rest[i % (num_agents - 1)].append(c)
  return [[0, 1]] + rest


def apply_quick(grid):
  """The grid with ``grid.quick``'s overrides (--quick: tiny models, a few iterations), in place."""
  q = grid.quick
  for key in _QUICK_FIELDS:
    grid[key] = q[key]
  t = grid.theorem1
  t.mus, t.graphs = q.theorem1_mus, q.theorem1_graphs
  t.num_agents, t.iterations = q.theorem1_num_agents, q.theorem1_iterations
  t.log_every = t.warm_log_every = 1
  t.warmup_iterations = q.theorem1_warmup_iterations
  t.warm_iterations = q.theorem1_iterations
  grid.faults.link_failures = q.faults_link_failures
  grid.faults.agent_dropouts = q.faults_agent_dropouts
  grid.faults.seeds, grid.faults.iterations = grid.seeds[:1], q.iterations
  grid.faults.eval_every = q.eval_every
  return grid


def _set_budget(c, iterations):
  """Iterations, with about ten log lines and four checkpoints and sample grids per run."""
  c.train.iterations = iterations
  c.train.log_every = max(1, min(50, iterations // 10))
  c.train.checkpoint_every = c.train.sample_every = max(1, iterations // 4)


def base_config(grid, dataset, seed, num_agents):
  """The default training config at the grid's scale: K agents, paper5 for K = 5 (else a ring),
  agent 0 holding classes {0, 1} when the shards are by class."""
  c = default_config.get_config()
  c.seed, c.num_agents, c.data.name = seed, num_agents, dataset
  c.model.width, c.model.d_width = grid.width, grid.get("d_width", 0.0)
  c.train.n_d = grid.get("n_d", c.train.n_d)
  c.train.lr_decay, c.train.ema_decay = grid.get("lr_decay", 0.0), grid.get("ema_decay", 0.0)
  c.eval.eval_every, c.eval.periodic_samples = grid.eval_every, grid.periodic_samples
  c.eval.final_samples = grid.final_samples
  c.topology.graph = "paper5" if num_agents == 5 else "ring"
  c.topology.fusion_period = grid.fusion_period
  _set_budget(c, grid.iterations)
  c.data.classes = classes_for(num_agents)
  return c


def main_cells(grid, seed):
  """Figs. 3-5 (homogeneous shards, every mode) and Fig. 6 (two classes per agent) for one seed."""
  out = []
  by_dataset, baseline_seeds = grid.get("seeds_by_dataset", {}), grid.get("baseline_seeds", None)
  for dataset in grid.datasets:
    if seed not in by_dataset.get(dataset, grid.seeds):
      continue
    for mode in grid.homogeneous_modes:
      if mode in BASELINES and (dataset not in grid.baseline_datasets
                                or (baseline_seeds is not None and seed not in baseline_seeds)):
        continue
      c = base_config(grid, dataset, seed, grid.num_agents)
      c.train.mode, c.data.partition = mode, "iid"
      out.append(Cell(f"{dataset}/iid/{mode}/seed{seed}", "homogeneous", c))
    for mode in grid.noniid_modes:
      c = base_config(grid, dataset, seed, grid.num_agents)
      c.train.mode, c.data.partition = mode, "classes"
      out.append(Cell(f"{dataset}/classes/{mode}/seed{seed}", "noniid", c))
  return out


def sweep_config(grid, graph, mu, iterations, log_every):
  """One Theorem 1 run: K fixed, homogeneous shards, no FID passes (only the disagreement);
  mu None keeps the default step size."""
  t = grid.theorem1
  c = base_config(grid, t.dataset, grid.seeds[0], t.num_agents)
  c.topology.graph, c.data.partition = graph, "iid"
  if mu is not None:
    c.train.learning_rate = mu
  c.train.lr_decay = c.train.ema_decay = 0.0  # a constant mu, the iterates: what Theorem 1 is about
  c.train.iterations = c.train.checkpoint_every = c.train.sample_every = iterations
  c.train.log_every = log_every
  c.eval.eval_every, c.eval.final_samples = 0, 0
  return c


def theorem1_cells(grid):
  """The disagreement against mu and the graph, every run from scratch."""
  t = grid.theorem1
  if not t.get("from_scratch", True):
    return []
  return [Cell(f"theorem1/{graph}/mu{mu}", "theorem1",
               sweep_config(grid, graph, mu, t.iterations, t.log_every))
          for graph in t.graphs for mu in t.mus]


def theorem1_warm_cells(grid, results_dir):
  """The same sweep from one common trained state: the warm-up run, then every cell starting
  from its weights (so mu and the graph are the only differences); none if warm-up is 0."""
  t = grid.theorem1
  if not t.warmup_iterations:
    return []
  out = [Cell(WARMUP, "warmup",
              sweep_config(grid, "complete", None, t.warmup_iterations, t.warm_log_every))]
  for graph in t.graphs:
    for mu in t.mus:
      c = sweep_config(grid, graph, mu, t.warm_iterations, t.warm_log_every)
      c.train.init_from = os.path.join(results_dir, "runs", WARMUP)
      out.append(Cell(f"theorem1_warm/{graph}/mu{mu}", "theorem1_warm", c))
  return out


def faults_cells(grid):
  """The main job under random link failures (p) and agent dropouts (q): --only=faults."""
  f, out = grid.faults, []
  for seed in f.seeds:
    for q in f.agent_dropouts:
      for p in f.link_failures:
        c = base_config(grid, "mnist", seed, grid.num_agents)
        c.data.partition = "classes"
        _set_budget(c, f.iterations)
        c.eval.eval_every = f.eval_every
        c.topology.link_failure, c.topology.agent_dropout = p, q
        out.append(Cell(f"faults/p{p}/q{q}/seed{seed}", "faults", c))
  return out


def cells(grid, results_dir=""):
  """Every cell of the grid, in training order (warm starts read from RESULTS_DIR/runs/, hence
  the argument).

  Seed-major, Theorem 1 after the first seed: a grid stopped part-way already has one seed of
  every cell and the Theorem 1 sweep.
  """
  out = main_cells(grid, grid.seeds[0])
  out += theorem1_cells(grid) + theorem1_warm_cells(grid, results_dir)
  for seed in grid.seeds[1:]:
    out += main_cells(grid, seed)
  return out + faults_cells(grid)
