"""DCGAN generator and discriminator (Radford et al. 2016) as Keras models; nothing about agents.

Width 1.0 reproduces the TensorFlow DCGAN tutorial's layer sizes (generator 256-128-64 filters,
discriminator 64-128); a width multiplier scales every hidden layer for CPU-sized runs.

The discriminator has no dropout (unlike the tutorial): a random mask would be state outside the
combination step, and the paper's D_k is a deterministic function of w_k^D.
"""

import keras
from keras import layers
import tensorflow as tf

from tfdiffgan.data import IMAGE_SHAPE
from tfdiffgan.errors import ConfigError


def _init(kind):
  """DCGAN's N(0, 0.02) (Radford et al., Sec. 4) or Keras' default Glorot uniform."""
  return keras.initializers.RandomNormal(0.0, 0.02) if kind == "dcgan" else "glorot_uniform"


def _units(base, width):
  return max(1, int(round(base * width)))


def make_generator(latent_dim=100, width=1.0, name="generator", init="dcgan"):
  """z [N, latent] -> image [N, 28, 28, 1] in [-1, 1]."""
  c1, c2, c3 = _units(256, width), _units(128, width), _units(64, width)
  k = _init(init)
  return keras.Sequential([
      keras.Input((latent_dim,)),
      layers.Dense(7 * 7 * c1, use_bias=False, kernel_initializer=k),
      layers.BatchNormalization(),
      layers.LeakyReLU(0.2),
      layers.Reshape((7, 7, c1)),
      layers.Conv2DTranspose(c2, 5, strides=1, padding="same", use_bias=False,
                             kernel_initializer=k),
      layers.BatchNormalization(),
      layers.LeakyReLU(0.2),
      layers.Conv2DTranspose(c3, 5, strides=2, padding="same", use_bias=False,
                             kernel_initializer=k),
      layers.BatchNormalization(),
      layers.LeakyReLU(0.2),
      layers.Conv2DTranspose(1, 5, strides=2, padding="same", activation="tanh",
                             kernel_initializer=k),
  ], name=name)


class MinibatchStddev(layers.Layer):
  """Appends one feature map: the standard deviation of every feature over the batch, averaged
  (Karras et al. 2018, "Progressive growing of GANs", Sec. 3). A discriminator that sees how
  varied a batch is can tell a too-uniform batch of generated digits from a real one, which one
  image at a time it cannot. No weights: nothing new to combine or checkpoint. (Tried on the main
  job: docs/RESULTS.md, round three.)"""

  def call(self, x):
    std = tf.sqrt(tf.math.reduce_variance(x, axis=0) + 1e-8)        # [H, W, C] over the batch
    shape = tf.concat([tf.shape(x)[:-1], [1]], axis=0)
    return tf.concat([x, tf.fill(shape, tf.reduce_mean(std))], axis=-1)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], input_shape[-1] + 1)


class Pack(layers.Layer):
  """[N, 28, 28, 1] -> [N / m, 28, 28, m]: each group of m consecutive images becomes one input
  of m channels (PacGAN, Lin et al., NeurIPS 2018). A discriminator that judges m samples jointly
  penalizes a generator whose samples lack variety (a missing or rare class), which one image at
  a time it cannot; it also halves D's work per batch at m = 2. Real and generated images are
  separate calls, so a pack never mixes them; batches are shuffled, so packs are random groups.
  A D that sees more per input can also win the game too easily (tried on the main job:
  docs/RESULTS.md, round four)."""

  def __init__(self, m, **kwargs):
    super().__init__(**kwargs)
    self.m = int(m)

  def call(self, x):
    h, w, c = x.shape[1:]
    x = tf.reshape(x, [-1, self.m, h, w, c])                      # [N / m, m, H, W, C]
    return tf.reshape(tf.transpose(x, [0, 2, 3, 1, 4]), [-1, h, w, self.m * c])

  def compute_output_shape(self, input_shape):
    n = None if input_shape[0] is None else input_shape[0] // self.m
    return (n, *input_shape[1:-1], input_shape[-1] * self.m)

  def get_config(self):
    return {**super().get_config(), "m": self.m}


def make_discriminator(width=1.0, name="discriminator", init="dcgan", minibatch_std=False,
                       pack=1):
  """image [N, 28, 28, 1] -> logit [N / pack, 1] (D = sigmoid(logit) in eq. 3; the losses are
  means over logits, so one logit per pack leaves eqs. 3 and 8 as they are). With minibatch_std
  each logit also depends on the batch's variety (MinibatchStddev): D(real) and D(fake) are
  separate calls on whole batches, so the statistic never mixes real and generated images. With
  pack = m > 1, D scores m images at once (Pack); N must be a multiple of m."""
  c1, c2 = _units(64, width), _units(128, width)
  k = _init(init)
  return keras.Sequential([
      keras.Input(IMAGE_SHAPE),
      *([Pack(pack)] if pack > 1 else []),
      layers.Conv2D(c1, 5, strides=2, padding="same", kernel_initializer=k),
      layers.LeakyReLU(0.2),
      layers.Conv2D(c2, 5, strides=2, padding="same", kernel_initializer=k),
      layers.LeakyReLU(0.2),
      *([MinibatchStddev()] if minibatch_std else []),
      layers.Flatten(),
      layers.Dense(1, kernel_initializer=k),
  ], name=name)


def combined_variables(model):
  """The variables an agent shares in the combine step (eq. 10b): every weight, including the
  BatchNorm moving statistics.

  Why the moving statistics too: they are running averages of activations that are functions of
  the weights. After the combine, agent k's weights are a mix of its neighbours' phi_l; keeping
  only its own statistics would pair the mixed weights with statistics of the unmixed ones, and
  the exported (inference-mode) generator would drift from the one being trained. Mixing them with
  the same A keeps each agent's statistics in step with its weights, reduces to purely local
  statistics when A = I, and makes them agree across agents when the weights do.
  Optimizer state (Adam moments) is not shared: it is local adaptation, and SGD has none.
  """
  return list(model.trainable_variables) + list(model.non_trainable_variables)


def recalibrate_batchnorm(model, inputs):
  """Sets every BatchNorm layer's moving statistics to the batch statistics of ``inputs`` flowing
  through the model's own weights (layer by layer, as in SWA's bn_update, Izmailov et al. 2018).

  Why: an average of weight iterates is a new network whose activations differ from every
  iterate's; averaging the iterates' moving statistics too pairs it with statistics of other
  networks, and its strokes fade (docs/RESULTS.md, "Tuning the main job"). Its own statistics,
  recomputed from a fixed noise batch, are the consistent read-out.
  """
  x = tf.convert_to_tensor(inputs)
  for layer in model.layers:
    if isinstance(layer, layers.BatchNormalization):
      axes = list(range(len(x.shape) - 1))
      mean, variance = tf.nn.moments(x, axes=axes)
      layer.moving_mean.assign(mean)
      layer.moving_variance.assign(variance)
    x = layer(x, training=False)
  return model


def check_config(config):
  """The model section: widths, latent size, and a pack that splits every batch evenly."""
  m = config.model
  for field in ("latent_dim", "pack"):
    value = m[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"model.{field}={value!r} must be a positive integer.")
  for field, allow_zero in (("width", False), ("d_width", True)):  # d_width 0: model.width
    value = m[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or (
        value == 0 and not allow_zero):
      raise ConfigError(f"model.{field}={value!r} must be a "
                        f"{'non-negative' if allow_zero else 'positive'} number.")
  if config.data.batch_size % m.pack:
    raise ConfigError(f"model.pack={m.pack} must divide data.batch_size={config.data.batch_size}: "
                      "D scores the batch in groups of model.pack images. Choose a batch size that "
                      "is a multiple of it, or model.pack=1.")
