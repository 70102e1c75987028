"""Every error a user can meet, at the bottom of the import graph.

Each module raises its own named error without importing the module that checks the config (no
import circles). ``bin/*`` print any of ``USER_ERRORS`` as one line and exit 2; any other
exception is a bug and keeps its traceback.
"""


class ConfigError(ValueError):
  """A config field (or a command-line flag) is invalid; the message names it and the fix."""


class TopologyError(ConfigError):
  """The graph or the combination matrix breaks Assumption 1; the message says how to fix it."""


class PlacementError(ConfigError):
  """The agents cannot be spread over the workers as asked, or the cluster is described wrongly."""


class DataError(RuntimeError):
  """A dataset cannot be found, read or cached; the message says where to put it."""


class MetricsError(RuntimeError):
  """A feature classifier or a score cannot be computed as asked."""


class ExportError(RuntimeError):
  """A generator cannot be exported or loaded (missing, damaged or of another run)."""


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. NaN losses, a lost peer); what was saved before is kept."""


class WorkdirError(RuntimeError):
  """The workdir cannot be used: locked by a live run, unwritable, or full."""


class LaunchError(RuntimeError):
  """bin/launch cannot start its workers."""


class Interrupted(RuntimeError):
  """A signal stopped the run cleanly at the end of an iteration, with a checkpoint there."""


USER_ERRORS = (ConfigError, DataError, MetricsError, ExportError, TrainingError, WorkdirError,
               LaunchError)


def check_choice(value, allowed, field, error=ConfigError):
  """Raises ``error`` unless the config field ``field`` holds one of ``allowed``."""
  if value not in allowed:
    raise error(f"{field}={value!r} is not one of {tuple(allowed)}; set --config.{field}=...")
