"""The import graph: errors at the bottom, no circles, and every module importable on its own.

A circle (config -> data -> config, say) works only while some import stays lazy inside a
function, and breaks as soon as someone moves it to the top; so function-level imports count
here as much as top-level ones. Every tfdiffgan module is checked, the run's modules included,
whatever shape the package takes: nothing is excluded.
"""

import ast
import os
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "tfdiffgan")


def _modules():
  """{dotted name: path} of every module under tfdiffgan/ (packages by their __init__)."""
  out = {}
  for directory, dirs, names in os.walk(PACKAGE):
    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
    for name in sorted(names):
      if not name.endswith(".py"):
        continue
      parts = os.path.relpath(os.path.join(directory, name), ROOT)[:-3].split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = os.path.join(directory, name)
  return out


def _imports(path, modules, name):
  """The tfdiffgan modules that the module at ``path`` imports, anywhere in its body."""
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from . import x, from .x import y
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] +
                        ([base] if base else []))
      # from P import N: the submodule P.N when there is one, else P itself
      targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                 for alias in node.names]
    else:
      continue
    for target in targets:
      while target and target not in modules:  # import tfdiffgan.a.b.c -> the deepest module
        target = target.rpartition(".")[0]
      if target and target != name:
        found.add(target)
  return found


def _cycle(graph):
  """One import circle as a list of modules (first == last), or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_circles_among_tfdiffgan_modules():
  modules = _modules()
  graph = {name: _imports(path, modules, name) for name, path in modules.items()}
  assert {"tfdiffgan.errors", "tfdiffgan.config", "tfdiffgan.data"} <= set(graph)
  cycle = _cycle(graph)
  assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_errors_files_and_seeds_are_leaves_and_no_checker_imports_config():
  """errors sits at the bottom (it imports nothing of tfdiffgan); the modules that check a part
  of the config raise their errors without importing config."""
  modules = _modules()
  graph = {name: _imports(path, modules, name) for name, path in modules.items()}
  assert graph["tfdiffgan.errors"] <= {"tfdiffgan"}
  assert graph["tfdiffgan.files"] <= {"tfdiffgan"}
  for name in ("data", "exchange", "optim", "placement", "models", "diffusion", "topology",
               "seeds", "workdir", "export", "metrics", "launch"):
    assert "tfdiffgan.config" not in graph[f"tfdiffgan.{name}"], name


@pytest.mark.e2e
def test_every_module_imports_alone():
  """Each module imported first, in an interpreter where no other tfdiffgan module is loaded
  (one subprocess: tfdiffgan's modules and flags are dropped between imports, TensorFlow stays)."""
  names = sorted(_modules())
  script = f"""
import importlib, sys, traceback
from absl import flags
failed, absl_flags = [], set(flags.FLAGS)
for name in {names!r}:
  for loaded in [m for m in sys.modules if m == "tfdiffgan" or m.startswith("tfdiffgan.")]:
    del sys.modules[loaded]
  for flag in set(flags.FLAGS) - absl_flags:  # the flags a tfdiffgan.main module defined
    delattr(flags.FLAGS, flag)
  try:
    importlib.import_module(name)
  except Exception:
    failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed) or "all imported")
"""
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "all imported", result.stdout[-3000:]
