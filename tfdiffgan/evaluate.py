"""Scoring finished runs and exported generators: what bin/evaluate and bin/generate call."""

import json
import os
import re

import ml_collections
import numpy as np
import tensorflow as tf

from tfdiffgan import config as config_lib
from tfdiffgan import export as export_lib
from tfdiffgan import metrics
from tfdiffgan.errors import ExportError


def _workdir_config(workdir):
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ExportError(f"{workdir} holds no config.json: not a bin/train workdir.")
  with open(path) as f:
    return config_lib.upgrade(ml_collections.ConfigDict(json.load(f)))


def workdir_generators(workdir):
  """(name, generate(z), latent_dim) per agent: from the exports, else the latest checkpoint."""
  config = _workdir_config(workdir)
  export_dir = os.path.join(workdir, "export")
  names = sorted((d for d in os.listdir(export_dir) if d.startswith("agent_")),
                 key=lambda d: int(d.split("_")[1])) if os.path.isdir(export_dir) else []
  if names:
    out = []
    for name in names:
      serve, latent = export_lib.load_generator(os.path.join(export_dir, name))
      out.append((name, serve, latent))
    return config, out
  from tfdiffgan.run import checkpoints  # pylint: disable=g-import-not-at-top
  _, gens = checkpoints.load_generators(config, workdir)  # averaged when train.ema_decay is on
  return config, [(f"agent_{k}", lambda z, g=g: g(z, training=False), config.model.latent_dim)
                  for k, g in enumerate(gens)]


def evaluate(workdir="", model="", dataset="", num_samples=10000, seed=1, inception_weights=""):
  """Scores every agent of a workdir, or one exported generator; returns a JSON-able dict.

  With ``inception_weights`` (a local InceptionV3 no-top weights file) each agent also gets the
  usual Inception FID, comparable with published numbers (slow on a CPU: 299x299 inputs).
  """
  if bool(workdir) == bool(model):
    raise config_lib.ConfigError("give exactly one of --workdir or --model.")
  if workdir:
    config, gens = workdir_generators(workdir)
    dataset = dataset or config.data.name
  else:
    serve, latent = export_lib.load_generator(model)
    gens = [(os.path.basename(model.rstrip("/")), serve, latent)]
    dataset = dataset or "mnist"
  if inception_weights:
    metrics.check_inception_weights(inception_weights)
  evaluator = metrics.Evaluator(dataset, verbose=True)
  real_inception = None
  if inception_weights:
    from tfdiffgan import data as data_lib  # pylint: disable=g-import-not-at-top
    real = data_lib.to_float(data_lib.load_dataset(dataset)["x_test"][:num_samples])
    real_inception = metrics.inception_features(real, inception_weights)
  agents = []
  for name, generate, latent in gens:
    try:
      m = evaluator.score_generator(generate, latent, num_samples, seed=seed)
    except metrics.MetricsError as e:
      raise metrics.MetricsError(f"{name}: {e}") from e
    if real_inception is not None:
      z = np.random.default_rng(seed).normal(size=(num_samples, latent)).astype(np.float32)
      fake = np.concatenate([np.asarray(generate(tf.constant(z[i:i + 500])))
                             for i in range(0, num_samples, 500)])
      m["inception_fid"] = metrics.fid_from_features(
          metrics.inception_features(fake, inception_weights), real_inception)
    m["agent"] = name
    agents.append(m)
  return {"dataset": dataset, "source": workdir or model, "num_samples": num_samples,
          "classifier": evaluator.describe(), "agents": agents,
          "network": metrics.network_summary(agents)}


def degradation_report(dataset, seed=0):
  """The classifier's FID on controlled corruptions of the real test split (sanity ladder)."""
  from tfdiffgan import data as data_lib  # pylint: disable=g-import-not-at-top
  arrays = data_lib.load_dataset(dataset)
  evaluator = metrics.Evaluator(dataset, arrays=arrays, verbose=True)
  real = data_lib.to_float(arrays["x_test"])
  cases = {"real (10k train images)": data_lib.to_float(arrays["x_train"][:10000])}
  cases.update(metrics.degradations(real, arrays["y_test"], seed=seed))
  agents = []
  for name, images in cases.items():
    m = evaluator.score_images(images)
    m["agent"] = name
    agents.append(m)
  return {"dataset": dataset, "source": "degradations of the real test split",
          "num_samples": len(real), "classifier": evaluator.describe(),
          "agents": agents, "network": metrics.network_summary(agents)}


def format_table(result):
  """One row per agent: FID, KID, coverage by the main classifier, then (when the check
  classifier scored too) its coverage, the robust coverage and the weakest class by both."""
  w = max(10, max(len(m["agent"]) for m in result["agents"]))
  check = all("robust_coverage" in m for m in result["agents"])
  head = f"{'agent':<{w}} {'FID':>8} {'KID':>9} {'+-':>7} {'cov':>4} {'H bits':>6}"
  if check:
    head += f" {'cov2':>4} {'robust':>6} {'weakest':>7} {'weakest2':>8}"
  lines = [head + "  top classes"]
  for m in result["agents"]:
    hist = np.array(m["class_histogram"])
    top = " ".join(f"{c}:{hist[c]:.0%}" for c in np.argsort(-hist)[:4])
    row = (f"{m['agent']:<{w}} {m['fid']:8.2f} {m['kid']:9.4f} {m['kid_se']:7.4f} "
           f"{m['coverage']:>4} {m['entropy_bits']:6.2f}")
    if check:
      row += (f" {m['check_coverage']:>4} {m['robust_coverage']:>6} "
              f"{m['weakest_class_share']:7.1%} {m['check_weakest_class_share']:8.1%}")
    lines.append(row + "  " + top)
  n = result["network"]
  row = (f"{'mean':<{w}} {n['fid_mean']:8.2f} {n['kid_mean']:9.4f} {'':>7} "
         f"{n['coverage_mean']:4.1f} {n['entropy_bits_mean']:6.2f}")
  if check:
    row += f" {n['check_coverage_mean']:4.1f} {n['robust_coverage_mean']:6.1f}"
  lines.append(row)
  c = result["classifier"]
  line = f"classifier: {c['dataset']} v{c['version']}, test accuracy {c['test_accuracy']:.4f}"
  if "check" in c:
    line += (f"; check classifier (cov2, weakest2) v{c['check']['version']}, test accuracy "
             f"{c['check']['test_accuracy']:.4f}; robust = classes both give >= 5%")
  lines.append(line + f"; {result['num_samples']} samples per agent vs the real test split")
  return "\n".join(lines)


def _check_out(out):
  """Refuses an --out that cannot take PNGs before anything is drawn."""
  directory = out.endswith("/") or os.path.isdir(out)
  if not directory and not out.lower().endswith(".png"):
    raise config_lib.ConfigError(f"--out={out}: bin/generate writes PNG images; name the grid "
                                 "*.png, or give a directory ending in / for one PNG each.")
  parent = os.path.abspath(out if directory else os.path.dirname(os.path.abspath(out)))
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ExportError(f"--out={out} lies under {parent}, which is a file, not a directory; "
                      "choose another path.")
  if not os.access(parent, os.W_OK):
    raise ExportError(f"--out={out}: {parent} is not writable; choose a writable path.")


def generate(model, num, out, seed=0):
  """Writes ``num`` samples of an exported generator as one square grid PNG, or single PNGs
  when ``out`` is a directory (ends with '/' or exists as one)."""
  if isinstance(num, bool) or not isinstance(num, int) or num < 1:
    raise config_lib.ConfigError(f"--num={num!r} must be a positive number of samples.")
  _check_out(out)
  serve, latent = export_lib.load_generator(model)
  z = np.random.default_rng(seed).normal(size=(num, latent)).astype(np.float32)
  images = serve(tf.constant(z)).numpy()
  if not np.isfinite(images).all():
    raise ExportError(f"{model} draws non-finite pixels (its weights hold NaN or Inf), so no "
                      "image was written; export the generator from an earlier checkpoint.")
  try:
    if out.endswith("/") or os.path.isdir(out):
      os.makedirs(out, exist_ok=True)
      return [export_lib.write_png(os.path.join(out, f"sample_{i:05d}.png"),
                                   export_lib.image_grid(images[i:i + 1], rows=1))
              for i in range(num)]
    return [export_lib.write_png(out, export_lib.image_grid(images))]
  except (OSError, tf.errors.OpError) as e:
    reason = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "",
                    getattr(e, "message", None) or str(e)).strip().splitlines()[0][:200]
    raise ExportError(f"cannot write --out={out}: {reason}; choose a writable path.") from e
