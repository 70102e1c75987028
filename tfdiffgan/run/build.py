"""Building a run: the strategy, this process's agents and their shards, the schedule, the step.

The order matters under ``train.strategy=multiworker``: the strategy must exist before any other
TensorFlow op in the process (``make_cluster`` first). Every worker then builds the same schedule
and placement and keeps only its own agents (their models, optimizers, noise and data), so agent
k's state lives on exactly one worker.
"""

import contextlib
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfdiffgan import data as data_lib
from tfdiffgan import diffusion
from tfdiffgan import models
from tfdiffgan import optim
from tfdiffgan import placement as placement_lib
from tfdiffgan import seeds
from tfdiffgan import schedule as schedule_lib
from tfdiffgan.errors import PlacementError


def log(fmt, *args):
  """Progress lines on stdout; TensorFlow's own INFO chatter stays off."""
  print("[tfdiffgan] " + (fmt % args if args else fmt), flush=True)


@dataclasses.dataclass
class Cluster:
  """Which process this is: the strategy, the number of worker processes and this one's index
  (None when one process holds every agent). Worker 0, the chief, alone writes shared files."""
  strategy: tf.distribute.Strategy
  num_workers: int = 1
  worker: int = None

  @property
  def multiworker(self):
    return self.worker is not None

  @property
  def chief(self):
    return not self.worker


def make_cluster(config):
  """The strategy (before any other TensorFlow op) and this process's place in the cluster."""
  strategy = diffusion.make_strategy(config.train.strategy, config.train.replicas,
                                     config.train.collective_timeout)
  if not diffusion.is_multiworker(strategy):
    return Cluster(strategy)
  num_workers, worker = placement_lib.cluster_from_env()
  cluster = Cluster(strategy, num_workers, worker)
  check_replica_id(cluster)
  return cluster


def check_replica_id(cluster):
  """The step gives worker w's agents to replica w: refuse a cluster where this process's
  replica is not its task index (no collective: each replica reports its own id)."""
  ids = cluster.strategy.experimental_local_results(cluster.strategy.run(
      lambda: tf.distribute.get_replica_context().replica_id_in_sync_group))
  replica = int(np.asarray(ids[0]))
  if len(ids) != 1 or replica != cluster.worker:
    raise PlacementError(f"worker {cluster.worker} (TF_CONFIG task.index) runs replica "
                         f"{replica} of {cluster.strategy.num_replicas_in_sync}; tfdiffgan needs "
                         "one replica per worker, numbered as the workers: one CPU or GPU per "
                         "worker process (bin/launch sets this up).")


def discriminator_width(config):
  """D's width multiplier: model.d_width, or model.width when that is 0."""
  return config.model.d_width or config.model.width


def make_generator(config, k):
  """Agent k's generator, initialised from its own seed (the same whoever builds it)."""
  keras.utils.set_random_seed(seeds.initial_weights(config.seed, k))
  return models.make_generator(config.model.latent_dim, config.model.width, name=f"generator_{k}")


def make_agents(config, num_agents, A, strategy, agent_ids=None, worker=None, support=None):
  """The agents this process owns (``agent_ids``, default all K): generator, discriminator and
  optimizers, each agent seeded on its own so agent k's initial weights depend neither on K nor
  on where or in what order it is built (non-cooperative agents are then exactly independent
  runs), each built on the device of the replica that owns it. D is built right after G (and
  its average) from the same Keras seed, so the order of the calls below is part of the run."""
  agent_ids = list(range(num_agents)) if agent_ids is None else list(agent_ids)
  gens, discs, d_opts, g_opts, emas = [], [], [], [], []
  c = config.train
  for k in agent_ids:
    device = diffusion.agent_device(strategy, k, num_agents)
    with tf.device(device) if device else contextlib.nullcontext():
      gens.append(make_generator(config, k))
      if c.ema_decay:  # the average starts as a copy of the initial weights
        emas.append(make_generator(config, k))
      discs.append(models.make_discriminator(discriminator_width(config),
                                             name=f"discriminator_{k}",
                                             minibatch_std=config.model.minibatch_std,
                                             pack=config.model.pack))
      d_opts.append(optim.make_optimizer(c.optimizer, c.learning_rate, c.beta1, c.clip_norm))
      g_opts.append(optim.make_optimizer(c.optimizer, c.learning_rate, c.beta1, c.clip_norm))
  return diffusion.DiffusionStep(gens, discs, d_opts, g_opts, A, n_d=c.n_d, n_g=c.n_g,
                                 latent_dim=config.model.latent_dim, loss=c.loss,
                                 seed=config.seed, strategy=strategy, agent_ids=agent_ids,
                                 worker=worker, exchange=c.exchange, support=support,
                                 timeout_seconds=c.collective_timeout,
                                 ema_generators=emas, ema_decay=c.ema_decay,
                                 compression=config.compression)


def load_shards(config, agent_ids=None, verbose=True):
  """The private image shards (uint8) of the agents ``agent_ids`` (default: all), every agent's
  class counts, and the dataset. A worker partitions the whole dataset the same way as every
  other worker, then keeps only its own agents' images."""
  arrays = data_lib.load_dataset(config.data.name, config.data.source_dir, verbose=verbose)
  parts = data_lib.partition(arrays["y_train"], config.num_agents, config.data.partition,
                             seed=seeds.partition(config.seed), classes=config.data.classes,
                             alpha=config.data.dirichlet_alpha)
  agent_ids = range(len(parts)) if agent_ids is None else agent_ids
  shards = [arrays["x_train"][parts[k]] for k in agent_ids]
  labels = [np.bincount(arrays["y_train"][p], minlength=data_lib.NUM_CLASSES) for p in parts]
  return shards, labels, arrays


@dataclasses.dataclass
class Network:
  """This process's part of the network: its agents (``agent_ids``, their shards and the step
  that adapts and combines them), and what every worker knows of the whole (schedule, A, K)."""
  config: object
  cluster: Cluster
  placement: placement_lib.Placement
  agent_ids: list
  shards: list
  shard_labels: list          # every agent's class counts, not only this process's
  arrays: dict
  schedule: object
  A: np.ndarray                # E[A_t]: the static A, or the mean of a random schedule
  K: int
  batch_size: int
  step: diffusion.DiffusionStep
  lambda2: float
  params_per_round: np.ndarray  # one message = one agent's D or G weights

  @property
  def centralized(self):
    return self.config.train.mode == "centralized"


def build(config, cluster):
  """This process's agents, shards and step, from a validated config."""
  tf.random.set_seed(config.seed)
  centralized = config.train.mode == "centralized"
  K = 1 if centralized else config.num_agents
  placement = placement_lib.Placement(K, cluster.num_workers)
  agent_ids = placement.agents_of(cluster.worker) if cluster.multiworker else list(range(K))
  shards, labels, arrays = load_shards(config, None if centralized else agent_ids,
                                       verbose=cluster.chief)
  schedule = schedule_lib.build(config, config.num_agents)
  A, K = schedule.mean_matrix(), schedule.K
  batch_size = config.data.batch_size
  if centralized:  # same samples per iteration as K agents of batch B
    shards, batch_size = [np.concatenate(shards)], config.data.batch_size * config.num_agents
  data_lib.check_shards(shards, batch_size)
  step = make_agents(config, K, A, cluster.strategy, agent_ids, cluster.worker,
                     support=schedule.support())
  count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
  d_params, g_params = count(step.discriminators[0]), count(step.generators[0])
  params = np.array([d_params] * config.train.n_d + [g_params] * config.train.n_g, np.float64)
  return Network(config, cluster, placement, agent_ids, shards, labels, arrays, schedule, A, K,
                 batch_size, step, schedule.rate(), params)
