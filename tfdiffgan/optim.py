"""Per-agent optimizers for the adapt step (eq. 10a), as plain tf.Modules.

Why not keras.optimizers: under a MirroredStrategy a Keras optimizer aggregates gradients across
replicas (merge_call), but here every replica updates *different* agents, and each agent's update
must stay its own. These classes touch only the variables they are given, checkpoint as ordinary
trackables, and keep their state (Adam moments) local to one agent.
"""

import tensorflow as tf

from tfdiffgan.errors import check_choice
from tfdiffgan.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")


def check_config(config):
  """The adapt step's fields: optimizer, step size mu, its decay, gradient clip, Adam's beta1."""
  t = config.train
  check_choice(t.optimizer, OPTIMIZERS, "train.optimizer")
  if t.learning_rate == 0:
    raise ConfigError("train.learning_rate=0 means no agent ever learns (phi = w): the run would "
                      "only average its initial weights. Set a positive step size, e.g. "
                      "--config.train.learning_rate=0.05.")
  _number(t.learning_rate, "train.learning_rate", "must be a positive number.", lambda v: v > 0)
  _number(t.clip_norm, "train.clip_norm", "must be a non-negative number.", lambda v: v >= 0)
  _number(t.lr_decay, "train.lr_decay",
          "must be in [0, 1): the step size falls linearly from mu to (1 - lr_decay) mu over "
          "train.iterations (0: constant, the paper's).", lambda v: 0 <= v < 1)
  _number(t.beta1, "train.beta1", "must be in [0, 1): Adam's first-moment decay (0.5 for GANs).",
          lambda v: 0 <= v < 1)


def _number(value, field, rule, ok):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
    raise ConfigError(f"{field}={value!r} {rule}")


def clip(grads_and_vars, clip_norm):
  """Rescales the agent's gradient to global norm <= clip_norm (0: unchanged)."""
  grads_and_vars = list(grads_and_vars)
  if not clip_norm:
    return grads_and_vars
  grads, _ = tf.clip_by_global_norm([g for g, _ in grads_and_vars], clip_norm)
  return list(zip(grads, [v for _, v in grads_and_vars]))


class SGD(tf.Module):
  """phi = w - mu * grad: exactly the paper's adapt step (with clip_norm = 0)."""

  def __init__(self, learning_rate, clip_norm=0.0, name="sgd"):
    super().__init__(name=name)
    self.learning_rate, self.clip_norm = float(learning_rate), float(clip_norm)

  def build(self, variables):
    del variables

  def apply_gradients(self, grads_and_vars, scale=1.0):
    """``scale``: this iteration's step-size factor (train.lr_decay), mu_i = scale * mu."""
    for g, v in clip(grads_and_vars, self.clip_norm):
      v.assign_sub(self.learning_rate * scale * g)


class Adam(tf.Module):
  """Adam (Kingma & Ba) with bias correction; moments are the agent's own and never combined."""

  def __init__(self, learning_rate, beta1=0.5, beta2=0.999, epsilon=1e-7, clip_norm=0.0,
               name="adam"):
    super().__init__(name=name)
    self.clip_norm = float(clip_norm)
    self.learning_rate, self.beta1, self.beta2, self.epsilon = (
        float(learning_rate), float(beta1), float(beta2), float(epsilon))
    self.iterations = None
    self.moments = []

  def build(self, variables):
    """Creates the slots (before tracing, so the step never creates variables)."""
    if self.iterations is not None:
      return
    self.iterations = tf.Variable(0.0, trainable=False, name="iterations")
    self.moments = [(tf.Variable(tf.zeros(v.shape), trainable=False, name="m"),
                     tf.Variable(tf.zeros(v.shape), trainable=False, name="v"))
                    for v in variables]

  def apply_gradients(self, grads_and_vars, scale=1.0):
    grads_and_vars = clip(grads_and_vars, self.clip_norm)
    t = self.iterations.assign_add(1.0)
    lr = scale * self.learning_rate * tf.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
    for (g, v), (m, s) in zip(grads_and_vars, self.moments):
      m.assign(self.beta1 * m + (1 - self.beta1) * g)
      s.assign(self.beta2 * s + (1 - self.beta2) * tf.square(g))
      v.assign_sub(lr * m / (tf.sqrt(s) + self.epsilon))


def make_optimizer(name, learning_rate, beta1=0.5, clip_norm=0.0):
  if name == "sgd":
    return SGD(learning_rate, clip_norm=clip_norm)
  if name == "adam":
    return Adam(learning_rate, beta1=beta1, clip_norm=clip_norm)
  raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
