"""Every random stream of a run, derived from config.seed and nothing else, in one place.

Agent k's streams depend on (seed, k) only, never on K, on the placement or on the order agents
are built in: so a non-cooperative agent is exactly an independent run, and every placement
trains the same weights. Read-outs use streams of their own so that evaluating a run never
changes what it trains.
"""

from tfdiffgan.errors import ConfigError


def check(seed):
  """Refuses a seed that numpy's and TensorFlow's generators cannot take."""
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ConfigError(f"seed={seed!r} must be a non-negative integer; set --config.seed=0, say.")
  return seed


def initial_weights(seed, k):
  """Keras' global seed before agent k's generator (then discriminator) is built."""
  return seed * 1000 + k


def data_order(seed, k):
  """Agent k's data order (data.agent_pipeline): its shuffles of its own shard."""
  return seed * 1000 + k


def noise(seed, k):
  """Agent k's latent noise (its tf.random.Generator): the z of every adapt step."""
  return seed * 7919 + 104729 * (k + 1)


def quantizer(seed, k):
  """Agent k's compression stream (compression.ACTC): the stateless seed [quantizer(seed, k),
  round] of its dithers and rand-k draws, so a resumed run, and any placement, draws the same."""
  return seed * 7919 + 104729 * (k + 1) + 15485863


def graph(seed):
  """Random graphs (Erdos-Renyi, small world), gossip matchings and link/agent faults."""
  return seed


def faults(seed, t):
  """The numpy seed of round t's link failures and dropouts (a resumed run draws the same)."""
  return [seed & 0xFFFFFFFF, 0xFA17, t]


def partition(seed):
  """The split of the training set into the agents' private shards."""
  return seed


def samples(seed):
  """The fixed noise of the 10 x 10 sample grids (the same every read-out)."""
  return seed


def evaluation(seed):
  """The latent draws that FID, KID and coverage score."""
  return seed + 1


def recalibration(seed):
  """The noise batch that recomputes an averaged generator's BatchNorm statistics."""
  return seed + 2
