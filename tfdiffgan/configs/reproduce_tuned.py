"""The grid on the tuned recipe: the paper's Figs. 3-6 and Theorem 1 with the main job's model,
optimizer and schedule (configs/mnist_noniid.py: G at width 0.375, D at 0.5, n_d = 1, 2,700
iterations, mu falling to 1% of 0.05, generator averaging), Algorithm 1 unchanged.

  tfdiffgan-reproduce --config=configs/reproduce_tuned.py --results_dir=results_tuned \
      --summaries_dir=docs/results

Each finished cell leaves a few KB under SUMMARIES_DIR/tuned/CELL/ (summary.json, agent_0.png);
a rerun skips those cells, even without their run directories, so the grid spans sessions, and
``--report_only`` rebuilds the tables and figures from the summaries alone. Its cells and wall
time: docs/RESULTS.md, "How the tuned grid was run".
"""

import ml_collections

from tfdiffgan.configs import reproduce


def get_config():
  c = reproduce.get_config()  # the paper's grid, then what the tuned recipe changes
  c.name = "tuned"
  c.seeds = [0, 1]
  c.seeds_by_dataset = {"fashion_mnist": [0]}
  c.width, c.d_width, c.n_d = 0.375, 0.5, 1
  c.iterations, c.lr_decay, c.ema_decay = 2700, 0.99, 0.995
  c.eval_every = 270  # nine periodic evaluations and the final one: ten points per Fig. 3 curve
  c.periodic_samples = 500
  c.final_samples = 5000
  c.baseline_seeds = [0]  # fusion and gossip (MNIST only): one seed, to keep the grid near 6 h
  c.fusion_period = 5  # FedGAN: D and G averaged every 5 iterations (every 1 would be the complete graph)
  # Theorem 1 from one common trained state only (claim iii), at a constant mu
  t = c.theorem1
  t.from_scratch = False
  t.warmup_iterations = 300
  t.warm_iterations = 80
  t.warm_log_every = 4
  c.faults = ml_collections.ConfigDict({"link_failures": [], "agent_dropouts": [], "seeds": [0],
                                        "iterations": 0, "eval_every": 0})
  q = c.quick
  q.seeds = [0]
  q.faults_link_failures, q.faults_agent_dropouts = [], []
  return c
