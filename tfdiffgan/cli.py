"""Shared by the thin binaries in bin/: turn the library's known errors into one clear line."""

import sys

from absl import flags
from absl import logging
import tensorflow as tf

from tfdiffgan.config import ConfigError
from tfdiffgan.data import DataError
from tfdiffgan.export import ExportError
from tfdiffgan.metrics import MetricsError
from tfdiffgan.topology import TopologyError
from tfdiffgan.trainer import TrainingError

KNOWN_ERRORS = (ConfigError, DataError, ExportError, MetricsError, TopologyError, TrainingError,
                ValueError)


def run_or_explain(fn, *args, **kwargs):
  """Calls fn; a known error prints 'error: ...' and exits 2 instead of a traceback.

  TensorFlow's INFO chatter (SavedModel writing etc.) is hidden unless --verbosity is given; the
  library's own progress lines go to stdout.
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel("ERROR")
  try:
    return fn(*args, **kwargs)
  except KNOWN_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
