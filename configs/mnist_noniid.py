"""The README's main job (`make train`): five agents on `paper5`, each seeing only two MNIST digits.

Algorithm 1 with SGD adapt steps, set for every agent to draw all ten digits on a few CPU cores
(how it was chosen, and what it reaches: docs/RESULTS.md, "Tuning the main job"):
- one discriminator round per generator round (n_d = 1): more generator steps for the same work;
- G at width 0.375 and D at 0.5: the rarest digits need cleaner strokes, not more steps, and a
  narrow D has too few filters to ask for them;
- the step size falls linearly from mu = 0.05 to 1% of it: the agents' disagreement is O(mu^2)
  (Theorem 1), so a small late mu pulls every agent towards the network's centroid, and the agents
  far from agent 0 in the graph stop favouring their own digits;
- each agent also reads out an average of its own generator iterates (train.ema_decay), which
  metrics.json scores beside the iterates.
"""

from tfdiffgan.configs import default


def get_config():
  config = default.get_config()
  config.data.partition = "classes"
  config.train.n_d = 1
  config.model.width = 0.375
  config.model.d_width = 0.5
  config.train.iterations = 2700
  config.train.lr_decay = 0.99
  config.train.ema_decay = 0.995
  config.eval.eval_every = 1350
  return config
