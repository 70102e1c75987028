"""Benchmarks of tfdiffgan; importing tfdiffgan first gives them its TensorFlow settings (oneDNN)."""

import tfdiffgan  # noqa: F401  pylint: disable=unused-import


def width_label(row):
  """A bench row's DCGAN width: '0.25', or '0.375/0.5' when D has its own (model.d_width)."""
  d = row.get("d_width", row["width"])
  return f"{row['width']}" if d == row["width"] else f"{row['width']}/{d}"
