"""What the binaries share before their flags are parsed: --version, TensorFlow's own logs on
--verbosity, and a --help that lists the program's flags however it was started.

The programs live here (not in bin/) so that an installed ``tfdiffgan-train`` and ``python -m
tfdiffgan.train`` work from any directory; bin/* only call them. Each imports the library, and so
TensorFlow, inside its main function, after ``run`` has decided whether TensorFlow may log.
"""

import inspect
import os
import re
import sys

from absl import app
from absl import flags

import tfdiffgan
from tfdiffgan import tflogs

FLAGS = flags.FLAGS
flags.DEFINE_bool("version", False, "Print tfdiffgan's version and exit.")

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
_VERBOSITY = re.compile(r"(--verbosity|-v|--v)(=|$)")


def config_fields():
  """The default config's fields with their defaults and comments, for --help: the assignment
  lines of tfdiffgan/configs/default.py, so the listing cannot drift from the defaults."""
  from tfdiffgan.configs import default  # pylint: disable=g-import-not-at-top
  lines = [re.sub(r"^\s*config\.", "  ", line.rstrip())
           for line in inspect.getsource(default).splitlines()
           if re.match(r"\s*config\.\S+ = ", line) and "ConfigDict()" not in line]
  return ("\nConfig fields and their defaults (tfdiffgan/configs/default.py); a config file changes "
          "some,\n--config.FIELD=VALUE overrides any:\n" + "\n".join(lines) + "\n")


def run(main, module_name, usage):
  """absl's app.run(main) for a program whose flags are defined in module_name.

  Handles --version before the flags are parsed (so required flags need not be given), lets
  --verbosity show TensorFlow's C++ logs too (TFDIFFGAN_TF_LOGS=1, read when TensorFlow is
  imported), and makes --help print `usage` and this program's flags: absl shows those of
  __main__, which is bin/*, the console-script wrapper or tfdiffgan/train.py, not module_name.
  """
  args = sys.argv[1:]
  if "--version" in args:
    print(f"tfdiffgan {tfdiffgan.__version__}")
    return
  if any(_VERBOSITY.match(a) for a in args):
    os.environ.setdefault(tflogs.ENV, "1")
  if module_name == "__main__":  # python -m tfdiffgan.main.X: absl files its flags under argv[0]
    module_name = sys.argv[0]
  sys.modules["__main__"].__doc__ = usage
  for flag in FLAGS.get_key_flags_for_module(module_name) + [FLAGS["version"]]:
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  from tfdiffgan import cli  # pylint: disable=g-import-not-at-top  (imports TensorFlow: after the log choice)
  try:
    app.run(main, flags_parser=cli.parse_flags)
  except SystemExit as e:
    if e.code == 1 and any(a.split("=", 1)[0] in HELP_FLAGS for a in args):
      sys.exit(0)  # absl exits 1 after printing help; asking for help is a success
    raise
