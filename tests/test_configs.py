"""Every config file loads from any directory: the defaults come from the package, not configs/."""

import glob
import json
import os
import subprocess
import sys

from conftest import ROOT

LOAD = """
import importlib.util, json, sys
sys.modules["configs"] = None  # the checkout's configs/ package cannot be imported, as when installed
out = {}
for path in sys.argv[1:]:
  spec = importlib.util.spec_from_file_location("cfg", path)  # as ml_collections loads --config
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  out[path.rsplit("/", 1)[-1]] = json.loads(module.get_config().to_json())
print(json.dumps(out))
"""


def test_every_config_loads_from_an_unrelated_directory(tmp_path):
  paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
  paths = [p for p in paths if not p.endswith("__init__.py")]
  r = subprocess.run([sys.executable, "-c", LOAD, *paths], capture_output=True, text=True,
                     cwd=tmp_path, timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]
  loaded = json.loads(r.stdout)
  assert len(loaded) == len(paths) >= 7
  from tfdiffgan.configs import default, reproduce  # pylint: disable=g-import-not-at-top
  assert loaded["mnist_iid.py"] == json.loads(default.get_config().to_json())
  assert loaded["reproduce.py"] == json.loads(reproduce.get_config().to_json())
  assert loaded["mnist_noniid.py"]["data"]["partition"] == "classes"
  assert loaded["paper_fashion.py"]["data"]["name"] == "fashion_mnist"
  assert loaded["paper_fashion.py"]["model"] == loaded["paper_mnist.py"]["model"]
  assert loaded["paper_mnist.py"]["model"]["width"] == 1.0
