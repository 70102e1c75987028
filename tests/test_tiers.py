"""The two test tiers cannot drift: every test that trains, builds a run or launches a process is
marked e2e, so `make test-fast` (`-m "not e2e"`) stays a tier of unit tests."""

import ast
import glob
import os
import textwrap

from conftest import ROOT

# Calls that make a test end-to-end: a subprocess (bin/*, python -c, pip), a training run, a run
# built (dataset, strategy, networks), or an evaluator (trains its classifier on the real data).
HEAVY_NAMES = {"train_and_evaluate", "Run", "Evaluator"}


def _is_heavy_call(node):
  if not isinstance(node, ast.Call):
    return False
  f = node.func
  if isinstance(f, ast.Attribute):
    if isinstance(f.value, ast.Name) and f.value.id == "subprocess":
      return True
    if f.attr == "train" and not node.args and not node.keywords:
      return True
    return f.attr in HEAVY_NAMES
  return isinstance(f, ast.Name) and f.id in HEAVY_NAMES


def _is_e2e_mark(node):
  """`pytest.mark.e2e`, as a decorator, a pytestmark or an item of a pytestmark list."""
  if isinstance(node, (ast.List, ast.Tuple)):
    return any(_is_e2e_mark(e) for e in node.elts)
  return (isinstance(node, ast.Attribute) and node.attr == "e2e" and
          isinstance(node.value, ast.Attribute) and node.value.attr == "mark")


def _functions(tree):
  return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _direct_uses(fn, names):
  """Module functions that fn calls or takes as a fixture, and whether it makes a heavy call."""
  uses = {a.arg for a in fn.args.args if a.arg in names}
  heavy = False
  for node in ast.walk(fn):
    if node is fn:
      continue
    heavy = heavy or _is_heavy_call(node)
    if isinstance(node, ast.Name) and node.id in names and node.id != fn.name:
      uses.add(node.id)
  return heavy, uses


def heavy_functions(source, external=frozenset()):
  """The module's functions (helpers, fixtures, tests) that make a heavy call themselves or
  through another one, to a fixed point; external names a conftest fixture or a helper imported
  from another test module that is heavy there."""
  functions = _functions(ast.parse(source))
  known = set(functions) | set(external)
  direct = {name: _direct_uses(fn, known) for name, fn in functions.items()}
  heavy = {name for name, (h, _) in direct.items() if h} | set(external)
  changed = True
  while changed:   # a helper of a helper, a fixture using a helper
    changed = False
    for name, (_, uses) in direct.items():
      if name not in heavy and uses & heavy:
        heavy.add(name)
        changed = True
  return heavy


def _imported_heavy(source, heavy_by_module):
  """Names this module imports from conftest or a sibling test module that are heavy there."""
  out = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and node.module in heavy_by_module:
      out |= {a.name for a in node.names} & heavy_by_module[node.module]
  return out


def unmarked_end_to_end_tests(source, external=frozenset()):
  """Names of the test functions in source that are end-to-end (directly, through a helper or a
  fixture) but carry no e2e mark of their own or of the module."""
  tree = ast.parse(source)
  module_marked = any(
      isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                        for t in n.targets) and _is_e2e_mark(n.value)
      for n in tree.body)
  if module_marked:
    return []
  heavy = heavy_functions(source, external)
  return [name for name, fn in _functions(tree).items()
          if name.startswith("test_") and name in heavy and
          not any(_is_e2e_mark(d) for d in fn.decorator_list)]


def test_the_scan_finds_unmarked_tests_that_launch_train_or_use_a_helper_that_does():
  source = textwrap.dedent("""
      import subprocess
      import pytest

      def _launch(*args):
        return subprocess.run(args)

      def _via(x):
        return _launch(x)

      @pytest.fixture
      def trained(tmp_path):
        return run_lib.Run(config, tmp_path).train()

      def test_launches():
        _via("bin/train")

      def test_trains(tmp_path):
        t = make()
        t.train()

      def test_uses_fixture(trained):
        assert trained

      def test_runs():
        run_lib.train_and_evaluate(c, w)

      @pytest.mark.e2e
      def test_marked():
        _launch("bin/train")

      def test_pure():
        assert sum([1, 2]) == 3
      """)
  assert sorted(unmarked_end_to_end_tests(source)) == [
      "test_launches", "test_runs", "test_trains", "test_uses_fixture"]
  assert unmarked_end_to_end_tests("import pytest\npytestmark = [pytest.mark.e2e]\n" + source) == []
  imported = "from test_other import _train\n\ndef test_imports_a_trainer():\n  _train()\n"
  assert unmarked_end_to_end_tests(imported) == []
  assert unmarked_end_to_end_tests(imported, external={"_train"}) == ["test_imports_a_trainer"]
  heavy_by_module = {"test_other": heavy_functions(source)}
  assert _imported_heavy("from test_other import _launch, _pure\n", heavy_by_module) == {"_launch"}


def test_every_end_to_end_test_is_marked_e2e():
  paths = sorted(glob.glob(os.path.join(ROOT, "tests", "test_*.py")))
  sources = {}
  for path in [os.path.join(ROOT, "tests", "conftest.py")] + paths:
    with open(path) as f:
      sources[os.path.basename(path)[:-3]] = f.read()
  # conftest's fixtures are heavy for every module; a module's helpers for those that import them
  heavy_by_module = {"conftest": heavy_functions(sources["conftest"])}
  for name, source in sources.items():
    heavy_by_module.setdefault(name, heavy_functions(source, heavy_by_module["conftest"]))
  offenders = []
  for name, source in sources.items():
    if name == "conftest":
      continue
    external = heavy_by_module["conftest"] | _imported_heavy(source, heavy_by_module)
    offenders += [f"{name}.py::{test}" for test in unmarked_end_to_end_tests(source, external)]
  assert not offenders, ("end-to-end tests without @pytest.mark.e2e (or a module "
                         f"pytestmark): {offenders}")
