"""Config checks: catch a bad field before any work starts, and a resume that would not fit."""

import json
import math
import os

MODES = ("diffusion", "noncooperative", "centralized", "fusion", "gossip")

# Fields that may change between a run and its resumption: they schedule or log, they do not
# change what is being trained.
RESUMABLE_FIELDS = ("train.iterations", "train.log_every", "train.checkpoint_every",
                    "train.collective_timeout",
                    "train.sample_every", "train.keep_checkpoints", "eval.")


# Fields added after runs were saved: a saved config without them meant these values.
ADDED_FIELDS = {"topology.link_failure": 0.0, "topology.agent_dropout": 0.0,
                "topology.failure_rule": "metropolis", "train.exchange": "auto",
                "train.collective_timeout": 0.0, "train.ema_decay": 0.0,
                "train.lr_decay": 0.0, "model.d_width": 0.0,
                "model.minibatch_std": False, "model.pack": 1}


from tfdiffgan.errors import ConfigError


def _numbers(node, prefix=""):
  """(field, value) for every number in a ConfigDict, nested lists included."""
  items = node.items() if hasattr(node, "items") else enumerate(node)
  for key, value in items:
    field = f"{prefix}.{key}" if prefix and hasattr(node, "items") else (
        f"{prefix}[{key}]" if prefix else str(key))
    if hasattr(value, "items") or isinstance(value, (list, tuple)):
      yield from _numbers(value, field)
    elif isinstance(value, float):
      yield field, value


def _choice(value, allowed, field):
  if value not in allowed:
    raise ConfigError(f"{field}={value!r} is not one of {allowed}; set --config.{field}=...")


def _positive(value, field, allow_zero=False):
  if not isinstance(value, (int, float)) or not value >= 0 or (value == 0 and not allow_zero):
    raise ConfigError(f"{field}={value!r} must be a {'non-negative' if allow_zero else 'positive'} "
                      "number.")


def validate(config):
  """Raises ConfigError naming the first bad field."""
  from tfdiffgan import data, diffusion, exchange, optim, topology  # pylint: disable=g-import-not-at-top
  for field, value in _numbers(config):
    if not math.isfinite(value):
      raise ConfigError(f"{field}={value!r} is not a finite number; set --config.{field}=... "
                        "to a real value.")
  _choice(config.data.name, data.DATASETS, "data.name")
  _choice(config.data.partition, ("iid", "classes", "dirichlet"), "data.partition")
  _choice(config.train.mode, MODES, "train.mode")
  _choice(config.train.optimizer, optim.OPTIMIZERS, "train.optimizer")
  _choice(config.train.loss, diffusion.LOSSES, "train.loss")
  _choice(config.train.strategy, diffusion.STRATEGIES, "train.strategy")
  _choice(config.train.exchange, ("auto",) + exchange.EXCHANGES, "train.exchange")
  _choice(config.topology.graph, topology.GRAPHS, "topology.graph")
  _choice(config.topology.rule, topology.RULES, "topology.rule")
  for field in ("num_agents", "data.batch_size", "train.n_d", "train.n_g", "train.log_every",
                "train.checkpoint_every", "train.sample_every", "train.keep_checkpoints",
                "model.latent_dim", "model.pack"):
    value = config
    for part in field.split("."):
      value = value[part]
    if not isinstance(value, int) or value < 1:
      raise ConfigError(f"{field}={value!r} must be a positive integer.")
  for field in ("eval.eval_every", "eval.final_samples"):
    value = config.eval[field.split(".")[1]]
    if not isinstance(value, int) or value < 0:
      raise ConfigError(f"{field}={value!r} must be a non-negative integer (0 turns it off).")
  if config.eval.periodic_samples < 2:
    raise ConfigError("eval.periodic_samples must be at least 2.")
  _positive(config.train.iterations, "train.iterations", allow_zero=True)
  if config.train.learning_rate == 0:
    raise ConfigError("train.learning_rate=0 means no agent ever learns (phi = w): the run would "
                      "only average its initial weights. Set a positive step size, e.g. "
                      "--config.train.learning_rate=0.05.")
  _positive(config.train.learning_rate, "train.learning_rate")
  if config.data.batch_size % config.model.pack:
    raise ConfigError(f"model.pack={config.model.pack} must divide data.batch_size="
                      f"{config.data.batch_size}: D scores the batch in groups of model.pack "
                      "images. Choose a batch size that is a multiple of it, or model.pack=1.")
  _positive(config.train.clip_norm, "train.clip_norm", allow_zero=True)
  _positive(config.model.width, "model.width")
  _positive(config.model.d_width, "model.d_width", allow_zero=True)
  _positive(config.train.collective_timeout, "train.collective_timeout", allow_zero=True)
  decay = config.train.lr_decay
  if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
    raise ConfigError(f"train.lr_decay={decay!r} must be in [0, 1): the step size falls linearly "
                      "from mu to (1 - lr_decay) mu over train.iterations (0: constant, the "
                      "paper's).")
  ema = config.train.ema_decay
  if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
    raise ConfigError(f"train.ema_decay={ema!r} must be in [0, 1): 0 turns generator averaging "
                      "off, 0.99-0.999 averages over the last 100-1000 iterations.")
  if config.train.strategy != "default" and config.train.mode == "centralized":
    raise ConfigError("train.mode=centralized trains one GAN, which cannot be spread over "
                      "replicas or workers: use --config.train.strategy=default.")
  if config.train.exchange == "local" and config.train.strategy != "default":
    raise ConfigError(f"train.exchange=local keeps every agent in one replica, but "
                      f"train.strategy={config.train.strategy} spreads them: use allgather or "
                      "neighbors (or auto).")
  if config.train.strategy == "mirrored":
    if not isinstance(config.train.replicas, int) or config.train.replicas < 1 or \
        config.num_agents % config.train.replicas:
      raise ConfigError(f"train.replicas={config.train.replicas!r} must be a positive divisor of "
                        f"num_agents={config.num_agents}: each replica owns K/R agents.")
  if config.train.init_from and not (os.path.isdir(config.train.init_from) or
                                     os.path.exists(config.train.init_from + ".index")):
    raise ConfigError(f"train.init_from={config.train.init_from!r} is neither a workdir nor a "
                      "checkpoint prefix (PATH.index missing); point it at a finished run's workdir.")
  if config.data.partition == "dirichlet":
    _positive(config.data.dirichlet_alpha, "data.dirichlet_alpha")
  if config.data.partition == "classes":
    data.check_classes(config.data.classes, config.num_agents)
  topology.check_faults(config)
  if config.data.partition == "classes" and len(config.data.classes) != config.num_agents:
    raise ConfigError(f"data.classes lists {len(config.data.classes)} agents but num_agents="
                      f"{config.num_agents}; give one list of classes per agent.")


def to_dict(config):
  return json.loads(config.to_json())


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


def check_resume(workdir, config):
  """Refuses to resume a workdir whose saved config trains something else. A workdir without a
  checkpoint holds nothing to resume (e.g. a start that failed), so any config may use it."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path) or not os.path.exists(os.path.join(workdir, "checkpoints",
                                                                 "checkpoint")):
    return
  with open(path) as f:
    saved = {**ADDED_FIELDS, **_flatten(json.load(f))}
  new = _flatten(to_dict(config))
  diffs = [f"{k}: saved {saved.get(k)!r}, now {new.get(k)!r}"
           for k in sorted(set(saved) | set(new))
           if saved.get(k) != new.get(k) and not k.startswith(RESUMABLE_FIELDS)]
  if diffs:
    raise ConfigError(f"{workdir} holds a run with a different config, so it cannot be resumed:\n  "
                      + "\n  ".join(diffs) +
                      "\nUse a new --workdir, or restore these values to resume the saved run.")


def upgrade(config):
  """A config loaded from an older run's config.json, with the fields added since (in place)."""
  for field, value in ADDED_FIELDS.items():
    section, name = field.split(".")
    if name not in config[section]:
      config[section][name] = value
  return config


def write(workdir, config):
  os.makedirs(workdir, exist_ok=True)
  tmp = os.path.join(workdir, "config.json.tmp")
  with open(tmp, "w") as f:
    f.write(config.to_json(indent=2))
  os.replace(tmp, os.path.join(workdir, "config.json"))
