"""Shared by the thin binaries in bin/: turn the library's known errors into one clear line.

Only the project's own exception types are user errors; any other exception is a bug and keeps
its traceback.
"""

import ast
import difflib
import importlib.util
import os
import sys

from absl import flags
from absl import logging
import ml_collections
import tensorflow as tf

from tfdiffgan import errors
from tfdiffgan.errors import Interrupted

KNOWN_ERRORS = errors.USER_ERRORS


def fail(message, code=2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def run_or_explain(fn, *args, **kwargs):
  """Calls fn; a known error prints 'error: ...' and exits 2 instead of a traceback; a stop by
  SIGINT/SIGTERM prints where to resume and exits 130.

  TensorFlow's INFO chatter (SavedModel writing etc.) is hidden unless --verbosity is given; the
  library's own progress lines go to stdout.
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel("ERROR")
  try:
    return fn(*args, **kwargs)
  except KNOWN_ERRORS as e:
    fail(e)
  except Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(130)
  except KeyboardInterrupt:
    print("stopped: interrupted; whatever was saved before is intact (rerun the same command to "
          "resume from the last checkpoint).", file=sys.stderr)
    sys.exit(130)


# ------------------------------------------------------------------------------ flag parsing


def _config_file_flags():
  from ml_collections.config_flags import config_flags  # pylint: disable=g-import-not-at-top
  return [name for name, flag in flags.FLAGS._flags().items()  # pylint: disable=protected-access
          if isinstance(flag, config_flags._ConfigFlag)]  # pylint: disable=protected-access


def _argv_value(argv, name):
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def load_config_file(path, flag="config"):
  """Loads a config file's get_config() as ml_collections would, or fails with one line."""
  spec_path, _, arg = path.partition(":") if not os.path.exists(path) else (path, "", "")
  if not os.path.isfile(spec_path):
    fail(f"--{flag}={path}: no such config file; give one such as configs/mnist_noniid.py.")
  try:
    with open(spec_path) as f:
      compile(f.read(), spec_path, "exec")
  except SyntaxError as e:
    fail(f"--{flag}={path}: syntax error at line {e.lineno}: {e.msg}. Fix the file.")
  try:
    spec = importlib.util.spec_from_file_location("_tfdiffgan_config_probe", spec_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
      fail(f"--{flag}={path} defines no get_config(); a config file's get_config() returns an "
           "ml_collections.ConfigDict (start from tfdiffgan.configs.default).")
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except  # the user's file, not our bug
    fail(f"--{flag}={path} failed to load: {type(e).__name__}: {e}. Fix the file.")
  if not isinstance(config, ml_collections.ConfigDict):
    fail(f"--{flag}={path}: get_config() returned {type(config).__name__}, not an "
         "ml_collections.ConfigDict; return one (e.g. config = tfdiffgan.configs.default."
         "get_config(), then change its fields).")
  return config


def _fields(node, prefix=""):
  out = {}
  for key, value in node.items():
    out[prefix + key] = value
    if hasattr(value, "items"):
      out.update(_fields(value, f"{prefix}{key}."))
  return out


def _literal_overrides(argv, flag, config):
  """Checks every --FLAG.FIELD=VALUE against the loaded config: an unknown field gets the closest
  valid name; a list field (e.g. data.classes, which ml_collections cannot override) is taken out
  of argv as a JSON/Python literal, to be applied after parsing."""
  fields = _fields(config)
  rest, lists = [], {}
  for arg in argv:
    if not arg.startswith(f"--{flag}."):
      rest.append(arg)
      continue
    name, has_value, value = arg[len(flag) + 3:].partition("=")
    if name not in fields:
      close = difflib.get_close_matches(name, [f for f in fields if not hasattr(fields[f], "items")],
                                        n=1, cutoff=0.6)
      fail(f"--{flag}.{name}: no such config field"
           + (f"; did you mean --{flag}.{close[0]}?" if close else
              f"; the fields are listed in {_argv_value(argv, flag)}."))
    if isinstance(fields[name], list):
      if not has_value:
        fail(f"--{flag}.{name} needs a value, e.g. --{flag}.{name}='{fields[name]}'.")
      try:
        lists[name] = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        fail(f"--{flag}.{name}={value}: not a list literal; write it as JSON or Python, e.g. "
             f"--{flag}.{name}='{fields[name]}'.")
      if not isinstance(lists[name], (list, tuple)):
        fail(f"--{flag}.{name}={value}: must be a list, e.g. --{flag}.{name}='{fields[name]}'.")
      continue
    rest.append(arg)
  return rest, lists


def parse_flags(argv):
  """absl's flags_parser for bin/*: a missing or broken config file, an unknown field or a bad
  flag value is one 'error: ...' line (exit 2), not a traceback; list fields such as
  data.classes take a literal on the command line (--config.data.classes='[[0, 1], [2, 3]]')."""
  pending = {}
  for flag in _config_file_flags():
    path = _argv_value(argv, flag)
    if path is None:
      continue
    config = load_config_file(path, flag)
    argv, lists = _literal_overrides(argv, flag, config)
    pending[flag] = lists
    # ml_collections finds the overrides in sys.argv, not in the argv it parses: show it ours
    flags.FLAGS[flag]._sys_argv = list(argv)  # pylint: disable=protected-access
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e}")
  for flag, lists in pending.items():
    config = flags.FLAGS[flag].value
    for name, value in lists.items():
      node, parts = config, name.split(".")
      for part in parts[:-1]:
        node = node[part]
      node[parts[-1]] = [list(v) if isinstance(v, tuple) else v for v in value]
  return rest
