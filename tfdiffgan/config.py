"""Config checks: catch a bad field before any work starts, and a resume that would not fit."""

import glob
import json
import math
import os

import ml_collections

from tfdiffgan import compression
from tfdiffgan import data
from tfdiffgan import diffusion
from tfdiffgan import exchange
from tfdiffgan import files
from tfdiffgan import models
from tfdiffgan import optim
from tfdiffgan import placement
from tfdiffgan import schedule
from tfdiffgan import seeds
from tfdiffgan import topology
from tfdiffgan.errors import check_choice
from tfdiffgan.errors import ConfigError

MODES = ("diffusion", "noncooperative", "centralized", "fusion", "gossip")

# Fields that may change between a run and its resumption: they schedule or log, they do not
# change what is being trained (train.iterations only while train.lr_decay = 0: check_resume).
RESUMABLE_FIELDS = ("train.iterations", "train.log_every", "train.checkpoint_every",
                    "train.collective_timeout",
                    "train.sample_every", "train.keep_checkpoints", "eval.")


# Fields added after runs were saved: a saved config without them meant these values.
ADDED_FIELDS = {"topology.link_failure": 0.0, "topology.agent_dropout": 0.0,
                "topology.failure_rule": "metropolis", "train.exchange": "auto",
                "train.collective_timeout": 0.0, "train.ema_decay": 0.0,
                "train.lr_decay": 0.0, "model.d_width": 0.0,
                "model.minibatch_std": False, "model.pack": 1,
                "compression.kind": "none", "compression.bits": 8, "compression.block": 256,
                "compression.fraction": 0.1, "compression.zeta": 1.0,
                "compression.gamma": 1.0, "compression.statistics": "float32",
                "compression.scale_bits": 32, "compression.dither": "stochastic",
                "compression.combine": "actc"}


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


def _get(config, field):
  value = config
  for part in field.split("."):
    value = value[part]
  return value




def _positive(value, field, allow_zero=False):
  if not isinstance(value, (int, float)) or not value >= 0 or (value == 0 and not allow_zero):
    raise ConfigError(f"{field}={value!r} must be a {'non-negative' if allow_zero else 'positive'} "
                      "number.")


def _positive_int(config, field):
  value = _get(config, field)
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{field}={value!r} must be a positive integer.")


def validate(config):
  """Raises ConfigError naming the first bad field: the generic checks (every number finite, the
  seed, num_agents), then each module's check of its own part of the config."""
  for field, value in _numbers(config):
    if not math.isfinite(value):
      raise ConfigError(f"{field}={value!r} is not a finite number; set --config.{field}=... "
                        "to a real value.")
  seeds.check(config.seed)
  _positive_int(config, "num_agents")
  data.check_config(config)
  models.check_config(config)
  optim.check_config(config)
  placement.check_config(config)
  exchange.check_config(config)
  compression.check_config(config)
  check_run(config)
  topology.check_config(config)
  schedule.check_config(config)


def check_run(config):
  """The run's own fields (mode, loss, rounds, loop cadence, averaging, warm start, read-outs):
  what the run's loop consumes, checked here until the run has a module of its own."""
  check_choice(config.train.mode, MODES, "train.mode")
  check_choice(config.train.loss, diffusion.LOSSES, "train.loss")
  for field in ("train.n_d", "train.n_g", "train.log_every", "train.checkpoint_every",
                "train.sample_every", "train.keep_checkpoints"):
    _positive_int(config, field)
  for field in ("eval.eval_every", "eval.final_samples"):
    value = _get(config, field)
    if not isinstance(value, int) or value < 0:
      raise ConfigError(f"{field}={value!r} must be a non-negative integer (0 turns it off).")
  if config.eval.periodic_samples < 2:
    raise ConfigError("eval.periodic_samples must be at least 2.")
  _positive(config.train.iterations, "train.iterations", allow_zero=True)
  _positive(config.train.collective_timeout, "train.collective_timeout", allow_zero=True)
  ema = config.train.ema_decay
  if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
    raise ConfigError(f"train.ema_decay={ema!r} must be in [0, 1): 0 turns generator averaging "
                      "off, 0.99-0.999 averages over the last 100-1000 iterations.")
  if config.train.init_from and not (os.path.isdir(config.train.init_from) or
                                     os.path.exists(config.train.init_from + ".index")):
    raise ConfigError(f"train.init_from={config.train.init_from!r} is neither a workdir nor a "
                      "checkpoint prefix (PATH.index missing); point it at a finished run's "
                      "workdir.")


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


def has_checkpoint(workdir):
  """True when the workdir holds a checkpoint of any process: checkpoints/checkpoint (one process)
  or checkpoints/worker-N/checkpoint (each worker of a multiworker run)."""
  root = os.path.join(workdir, "checkpoints")
  return os.path.exists(os.path.join(root, "checkpoint")) or bool(
      glob.glob(os.path.join(root, "worker-*", "checkpoint")))


def check_resume(workdir, config):
  """Refuses to resume a workdir whose saved config trains something else. A workdir without a
  checkpoint holds nothing to resume (e.g. a start that failed), so any config may use it."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path) or not has_checkpoint(workdir):
    return
  saved = {**ADDED_FIELDS, **_flatten(files.read_json(path))}
  new = _flatten(to_dict(config))
  diffs = [f"{k}: saved {saved.get(k)!r}, now {new.get(k)!r}"
           for k in sorted(set(saved) | set(new))
           if saved.get(k) != new.get(k) and not k.startswith(RESUMABLE_FIELDS)]
  if diffs:
    raise ConfigError(f"{workdir} holds a run with a different config, so it cannot be resumed:\n  "
                      + "\n  ".join(diffs) +
                      "\nUse a new --workdir, or restore these values to resume the saved run.")
  before, now = saved.get("train.iterations"), new.get("train.iterations")
  if before != now and new.get("train.lr_decay"):
    # mu_i = mu (1 - lr_decay i / train.iterations): another total moves every later step size
    raise ConfigError(f"train.iterations={now} cannot resume {workdir} (saved {before}) while "
                      f"train.lr_decay={new['train.lr_decay']}: the step size depends on the "
                      "total, so it would jump at the resume. Keep "
                      f"--config.train.iterations={before}, or train runs to extend with "
                      "train.lr_decay=0.")


def upgrade(config):
  """A config loaded from an older run's config.json, with the fields added since (in place)."""
  for field, value in ADDED_FIELDS.items():
    section, name = field.split(".")
    if section not in config:  # a section added since (compression)
      config[section] = ml_collections.ConfigDict()
    if name not in config[section]:
      config[section][name] = value
  return config


def write(workdir, config):
  os.makedirs(workdir, exist_ok=True)
  files.write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))
