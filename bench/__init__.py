"""Benchmarks of tfdiffgan; importing tfdiffgan first gives them its TensorFlow settings (oneDNN)."""

import tfdiffgan  # noqa: F401  pylint: disable=unused-import


def width_label(row):
  """A bench row's DCGAN width: '0.25', or '0.375/0.5' when D has its own (model.d_width)."""
  d = row.get("d_width", row["width"])
  return f"{row['width']}" if d == row["width"] else f"{row['width']}/{d}"


def parse_flags(argv, defaults, ints=()):
  """--key=value flags over ``defaults`` (a dict of strings); an unknown key is one clear error.
  The keys in ``ints`` are converted to int."""
  args = dict(defaults)
  for a in argv:
    key, _, value = a.lstrip("-").partition("=")
    if key not in args:
      raise SystemExit(f"error: unknown flag {a}; flags: {sorted(args)}")
    args[key] = value
  for key in ints:
    args[key] = int(args[key])
  return args
