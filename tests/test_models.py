"""The DCGAN models: the discriminator's width and its optional minibatch standard deviation."""

import keras
import numpy as np
import tensorflow as tf

from tfdiffgan import models


def test_minibatch_stddev_appends_the_batch_mean_of_feature_deviations():
  x = tf.constant(np.random.default_rng(0).normal(size=(6, 3, 3, 4)), tf.float32)
  y = models.MinibatchStddev()(x).numpy()
  assert y.shape == (6, 3, 3, 5)
  np.testing.assert_array_equal(y[..., :4], x.numpy())
  want = np.mean(np.sqrt(np.var(x.numpy(), axis=0) + 1e-8))
  np.testing.assert_allclose(y[..., 4], want, rtol=1e-5)


def test_only_the_minibatch_std_discriminator_judges_a_sample_by_its_batch():
  """A DCGAN D scores each image alone; with minibatch_std the same image scores differently
  beside a varied batch than beside copies of itself, and no weight is added to combine."""
  images = tf.constant(np.random.default_rng(1).uniform(-1, 1, size=(8, 28, 28, 1)), tf.float32)
  copies = tf.repeat(images[:1], 8, axis=0)
  for flag in (False, True):
    keras.utils.set_random_seed(0)
    d = models.make_discriminator(0.25, minibatch_std=flag)
    alone, beside = d(copies, training=True)[0, 0], d(images, training=True)[0, 0]
    assert (abs(float(alone - beside)) > 1e-6) == flag
  plain = models.make_discriminator(0.25)
  # one more input to the last layer (49 = 7 x 7 positions of the extra feature map), no new layer
  # with weights
  assert d.count_params() == plain.count_params() + 49
  assert len(d.weights) == len(plain.weights)
