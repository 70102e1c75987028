"""Importing tfdiffgan chooses TensorFlow's oneDNN kernels unless the user already chose."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _onednn_after_import(env_value):
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if env_value is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = env_value
  code = "import os, tfdiffgan; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env, check=True)
  return out.stdout.strip()


def test_onednn_on_by_default():
  assert _onednn_after_import(None) == "1"


def test_user_choice_wins():
  assert _onednn_after_import("0") == "0"
