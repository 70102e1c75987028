"""The grid of tfdiffgan-reproduce (its default --config): the paper's Figs. 3-6 at CPU scale, two
baselines, Theorem 1. In the package so that the binary finds it from any directory.

  tfdiffgan-reproduce --results_dir=results          # the full grid
  tfdiffgan-reproduce --results_dir=/tmp/r --quick   # minutes

Every cell is an ordinary bin/train run under RESULTS_DIR/runs/, resumed or skipped when already
complete, so the grid can be run piecewise.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "paper"  # per-cell summaries go to SUMMARIES_DIR/paper/CELL/
  c.datasets = ["mnist", "fashion_mnist"]
  c.seeds = [0, 1]
  c.num_agents = 5
  c.width = 0.25
  c.d_width = 0.0   # D as wide as G
  c.n_d = 5         # the paper's five discriminator rounds per generator round
  c.lr_decay = 0.0  # the paper's constant mu
  c.ema_decay = 0.0
  c.iterations = 300
  c.eval_every = 100
  c.periodic_samples = 2000
  c.final_samples = 10000
  # Fig. 3 (homogeneous shards): the paper's three modes and the two baselines it cites
  c.homogeneous_modes = ["noncooperative", "centralized", "diffusion", "fusion", "gossip"]
  # the two baselines cost a cell each per seed: run them on these datasets only, to keep the grid short
  c.baseline_datasets = ["mnist"]
  c.fusion_period = 1  # a network average of D and G every iteration (FedGAN)
  # Fig. 6 (two classes per agent): agent 0 holds {0, 1} (MNIST) / {T-shirt, trouser}
  c.noniid_modes = ["diffusion", "noncooperative"]
  # Theorem 1: disagreement of D after the transient against mu and the graph
  c.theorem1 = ml_collections.ConfigDict()
  c.theorem1.mus = [0.0125, 0.025, 0.05, 0.1]
  c.theorem1.graphs = ["ring", "grid", "complete"]
  c.theorem1.num_agents = 6
  c.theorem1.iterations = 80
  c.theorem1.dataset = "mnist"
  c.theorem1.log_every = 5
  # The same sweep from one common trained state: a warm-up run (complete graph, mu = 0.05) whose
  # weights every cell starts from, so that mu and the graph are the only differences (from
  # scratch, a larger mu also means a GAN further along in training). 0 turns it off.
  c.theorem1.warmup_iterations = 100
  c.theorem1.warm_iterations = 40
  c.theorem1.warm_log_every = 2

  # Faults of the network: MNIST, two classes per agent, paper5, n_d = 5, constant mu, 700
  # iterations, with every link failing with probability p and every agent offline with
  # probability q in each round; --only=faults runs these cells alone.
  c.faults = ml_collections.ConfigDict()
  c.faults.link_failures = [0.0, 0.1, 0.3, 0.5]
  c.faults.agent_dropouts = [0.0, 0.2]
  c.faults.seeds = [0]
  c.faults.iterations = 700
  c.faults.eval_every = 250

  c.quick = ml_collections.ConfigDict()  # what --quick overrides (the tests run this)
  c.quick.datasets = ["mnist"]
  c.quick.seeds = [0, 1]
  c.quick.num_agents = 2
  c.quick.width = 0.125
  c.quick.iterations = 2
  c.quick.eval_every = 1
  c.quick.periodic_samples = 100
  c.quick.final_samples = 200
  c.quick.homogeneous_modes = ["noncooperative", "centralized", "diffusion", "fusion", "gossip"]
  c.quick.baseline_datasets = ["mnist"]
  c.quick.theorem1_mus = [0.025, 0.05]
  c.quick.theorem1_graphs = ["ring", "complete"]
  c.quick.theorem1_num_agents = 3
  c.quick.theorem1_iterations = 2
  c.quick.theorem1_warmup_iterations = 1
  c.quick.faults_link_failures = [0.0, 0.5]
  c.quick.faults_agent_dropouts = [0.2]
  return c
