"""The README's main job: five agents on `paper5`, each seeing only two MNIST digits.

Algorithm 1 with SGD adapt steps, tuned to draw all ten digits within about 10 minutes of training
on 2 CPU cores (8.7-9.0 on the machine it was tuned on, 11.7-12.7 on one with 30% slower cores,
19.6-24 on one without AVX-512; docs/RESULTS.md, "Tuning the main job"): one discriminator round
per generator round (n_d = 1) buys 2,700 iterations of a DCGAN at width 0.375 with a discriminator
at width 0.5 (the wider networks drew better digits: on seed 1 every class reached 6% by both
classifiers, where width 0.25 left two under 5%); the step size falls linearly from mu = 0.05 to
1% of it, so the agents' disagreement (O(mu^2), Theorem 1) shrinks and the agents that hold {6, 7}
and {8, 9} stop favouring their own digits; each agent also reads out an average of its own
generator iterates (train.ema_decay), which metrics.json scores beside the iterates.
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
