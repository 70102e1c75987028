"""The binaries' flag parsing and error handling: one 'error: ...' line (exit 2) for every bad
input, a traceback only for bugs."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from tfdiffgan import cli


def _bin(script, *args, config=True):
  cmd = [sys.executable, os.path.join(ROOT, "bin", script), *args]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def _one_error_line(result):
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


@pytest.mark.e2e
@pytest.mark.parametrize("args,match", [
    (["--config=configs/nope.py"], "error: --config=configs/nope.py: no such config file"),
    (["--config.train.itersations=5"],
     "error: --config.train.itersations: no such config field; did you mean "
     "--config.train.iterations?"),
    (["--config.data.classes=[[0, 1], [2"],
     "error: --config.data.classes=[[0, 1], [2: not a list literal"),
    (["--config.model.width=abc"], "could not convert string to float: 'abc'"),
    (["--config.train.learning_rate=nan"], "error: train.learning_rate=nan is not a finite number"),
])
def test_bad_config_flags_are_one_line(tmp_path, args, match):
  args = [a if a.startswith("--config=") else a for a in args]
  if not any(a.startswith("--config=") for a in args):
    args = ["--config=configs/mnist_noniid.py", *args]
  result = _bin("train", *args, f"--workdir={tmp_path / 'run'}")
  assert match in _one_error_line(result)
  assert not os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.e2e
def test_config_file_with_a_syntax_error(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config():\n  return (\n")
  result = _bin("train", f"--config={bad}", f"--workdir={tmp_path / 'run'}")
  assert f"error: --config={bad}: syntax error at line 2" in _one_error_line(result)


@pytest.mark.e2e
def test_list_fields_take_a_literal_on_the_command_line(tmp_path, idx_dir):
  """data.classes (a list, which ml_collections cannot override) is accepted as JSON/Python;
  a flat list in it is refused with the expected shape."""
  base = [f"--workdir={tmp_path / 'run'}", "--config=configs/mnist_noniid.py",
          "--config.train.iterations=0", f"--config.data.source_dir={idx_dir}",
          "--config.eval.final_samples=0", "--config.model.width=0.125", "--config.model.d_width=0",
          "--config.data.batch_size=8"]
  result = _bin("train", *base, "--config.data.classes=[[0], [1], [2, 3], [4, 5, 6], [7, 8, 9]]")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "agent 3: 60 images, classes [4, 5, 6]" in result.stdout
  result = _bin("train", *base, "--config.data.classes=[0, 1, 2]")
  assert "data.classes=[0, 1, 2] must be a list of lists" in _one_error_line(result)


@pytest.mark.e2e
@pytest.mark.parametrize("num", ["0", "-5"])
def test_generate_needs_a_positive_num(tmp_path, num):
  result = _bin("generate", f"--model={tmp_path}", f"--num={num}")
  assert f"error: flag --num={num}: {num} is not a positive integer" in \
      _one_error_line(result)


def test_bugs_keep_their_traceback():
  assert ValueError not in cli.KNOWN_ERRORS
  with pytest.raises(ValueError, match="a bug"):
    cli.run_or_explain(lambda: (_ for _ in ()).throw(ValueError("a bug")))


@pytest.mark.e2e
def test_a_negative_seed_is_one_line_and_writes_nothing(tmp_path):
  result = _bin("train", "--config=configs/mnist_noniid.py", "--config.seed=-1",
                f"--workdir={tmp_path / 'run'}")
  assert _one_error_line(result) == ("error: seed=-1 must be a non-negative integer; set "
                                     "--config.seed=0, say.")
  assert not os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.parametrize("returned, kind", [("{'seed': 0}", "dict"), ("None", "NoneType")])
def test_get_config_must_return_a_config_dict(tmp_path, capsys, returned, kind):
  path = tmp_path / "cfg.py"
  path.write_text(f"def get_config():\n  return {returned}\n")
  with pytest.raises(SystemExit) as e:
    cli.load_config_file(str(path))
  assert e.value.code == 2
  assert capsys.readouterr().err == (
      f"error: --config={path}: get_config() returned {kind}, not an ml_collections.ConfigDict; "
      "return one (e.g. config = tfdiffgan.configs.default.get_config(), then change its "
      "fields).\n")


def test_a_config_file_without_get_config_is_named(tmp_path, capsys):
  path = tmp_path / "cfg.py"
  path.write_text("config = {}\n")
  with pytest.raises(SystemExit):
    cli.load_config_file(str(path))
  assert "defines no get_config(); a config file's get_config() returns an " \
      "ml_collections.ConfigDict" in capsys.readouterr().err


def test_user_errors_are_the_errors_module_s():
  from tfdiffgan import errors  # pylint: disable=g-import-not-at-top
  assert set(errors.USER_ERRORS) <= set(cli.KNOWN_ERRORS)


@pytest.mark.e2e
def test_an_unwritable_cache_is_one_line_naming_tfdiffgan_cache(tmp_path):
  regular = tmp_path / "file"
  regular.write_text("x")
  cmd = [sys.executable, os.path.join(ROOT, "bin", "train"), "--config=configs/mnist_iid.py",
         f"--workdir={tmp_path / 'run'}"]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                   TFDIFFGAN_CACHE=str(regular / "cache")))
  line = _one_error_line(result)
  assert line.startswith(f"error: cannot write the tfdiffgan cache at {regular / 'cache'}")
  assert "set TFDIFFGAN_CACHE to a writable directory" in line and "--workdir" not in line
  assert not os.path.exists(tmp_path / "run" / "config.json")
