"""Exports: a SavedModel per generator (endpoint ``serve``) and PNG sample grids."""

import os
import shutil

import numpy as np
import tensorflow as tf
import keras

from tfdiffgan.errors import ExportError


def export_generator(generator, path, latent_dim):
  """Writes a SavedModel whose ``serve(z)`` maps float32 [N, latent] to [N, 28, 28, 1] in [-1, 1].

  Inference mode (BatchNorm moving statistics), so the export is a deterministic function of z.
  Written to a temporary folder first and swapped in, so a crash never leaves half an export.
  """
  archive = keras.export.ExportArchive()
  archive.track(generator)
  archive.add_endpoint(
      name="serve", fn=lambda z: generator(z, training=False),
      input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="z")])
  tmp = path.rstrip("/") + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  archive.write_out(tmp, verbose=False)
  shutil.rmtree(path, ignore_errors=True)
  os.replace(tmp, path)
  return path


def load_generator(path):
  """Loads an exported generator; returns (serve function, latent_dim) after checking its shape."""
  if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "saved_model.pb")):
    raise ExportError(f"{path} is not an exported generator (no saved_model.pb); export one with "
                      "bin/train (it writes WORKDIR/export/agent_K).")
  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ExportError(f"cannot load the SavedModel at {path}: {e}. Re-export it.") from e
  serve = getattr(loaded, "serve", None)
  signature = getattr(serve, "input_signature", None)
  if serve is None or not signature:
    raise ExportError(f"{path} has no serve(z) endpoint with an input signature; export the "
                      "generator with bin/train (it writes WORKDIR/export/agent_K).")
  spec = signature[0]
  if (len(signature) != 1 or not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.float32
      or spec.shape.rank != 2 or spec.shape[1] is None):
    raise ExportError(f"{path}: serve() must take one float32 [N, latent] tensor; it takes "
                      f"{list(signature)}. Re-export the generator with bin/train.")
  latent_dim = int(spec.shape[1])
  try:
    out = serve(tf.zeros([1, latent_dim]))
  except Exception as e:  # pylint: disable=broad-except  # a foreign model, not our bug
    raise ExportError(f"{path}: serve() fails on a [1, {latent_dim}] input: "
                      f"{str(e).splitlines()[0][:200]}. Re-export the generator.") from e
  if not isinstance(out, tf.Tensor):
    raise ExportError(f"{path}: serve() returns a {type(out).__name__}, not one tensor "
                      "[N, 28, 28, 1]; re-export the generator with bin/train.")
  if tuple(out.shape[1:]) != (28, 28, 1):
    raise ExportError(f"{path}: serve() returns shape {tuple(out.shape)}, expected [N, 28, 28, 1].")
  return serve, latent_dim


def image_grid(images, rows=None):
  """[N, 28, 28, 1] in [-1, 1] -> uint8 [rows*28, cols*28, 1], filled row by row."""
  images = np.asarray(images)
  n = len(images)
  rows = rows or int(np.ceil(np.sqrt(n)))
  cols = int(np.ceil(n / rows))
  h, w = images.shape[1:3]
  grid = np.full((rows * h, cols * w, 1), 0, np.uint8)
  pixels = np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  for i in range(n):
    r, c = divmod(i, cols)
    grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
  return grid


def write_png(path, image_uint8):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tf.io.write_file(path, tf.io.encode_png(image_uint8))
  return path
