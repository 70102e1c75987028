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


def test_pack_stacks_consecutive_images_as_channels():
  x = tf.constant(np.random.default_rng(2).normal(size=(6, 28, 28, 1)), tf.float32)
  y = models.Pack(2)(x).numpy()
  assert y.shape == (3, 28, 28, 2)
  for i in range(3):
    for j in range(2):
      np.testing.assert_array_equal(y[i, ..., j], x.numpy()[2 * i + j, ..., 0])


def test_a_packed_discriminator_scores_each_group_of_images_jointly():
  """pack=2: one logit per pair; changing an image changes its own pair's logit only, and the
  only new weights are the first convolution's second input channel."""
  images = np.random.default_rng(3).uniform(-1, 1, size=(8, 28, 28, 1)).astype(np.float32)
  keras.utils.set_random_seed(0)
  d = models.make_discriminator(0.25, pack=2)
  before = d(images, training=True).numpy()
  assert before.shape == (4, 1)
  changed = images.copy()
  changed[5] = -changed[5]                       # the second image of pair 2
  after = d(changed, training=True).numpy()
  moved = np.abs(after - before)[:, 0] > 1e-6
  assert moved.tolist() == [False, False, True, False]
  plain = models.make_discriminator(0.25)
  assert d.count_params() == plain.count_params() + 5 * 5 * 16
