"""Benchmarks of tfdiffgan; importing tfdiffgan first gives them its TensorFlow settings (oneDNN)."""

import tfdiffgan  # noqa: F401  pylint: disable=unused-import
