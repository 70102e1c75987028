"""Launcher: N worker processes on this machine, one TF_CONFIG each, output merged and prefixed.

  bin/launch --workers=N -- bin/train --config=... --workdir=... --config.train.strategy=multiworker

Ports come from binding port 0 on loopback. Each child's lines are printed as they come, prefixed
``[wN]`` except the chief's (worker 0), whose lines are the run's. When a worker exits with an
error the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launcher exits
with that worker's code, so a bad flag fails fast with the child's own message.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import tfdiffgan
from tfdiffgan.errors import LaunchError

GRACE_SECONDS = 10


def free_ports(count, host="127.0.0.1"):
  """Ports the OS reports free on loopback (bound to port 0, then released)."""
  socks, ports = [], []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      s.bind((host, 0))
      socks.append(s)
      ports.append(s.getsockname()[1])
  finally:
    for s in socks:
      s.close()
  return ports


def tf_configs(num_workers, host="127.0.0.1", ports=None):
  """One TF_CONFIG (a JSON string) per worker of a loopback cluster."""
  ports = ports or free_ports(num_workers, host)
  cluster = {"worker": [f"{host}:{p}" for p in ports]}
  return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
          for i in range(num_workers)]


def child_command(command):
  """Runs a Python script (bin/train) with this interpreter: its '#!/usr/bin/env python3' may
  name another Python, without TensorFlow."""
  first = command[0]
  if os.path.isfile(first) and not os.access(first, os.X_OK) or first.endswith(".py"):
    return [sys.executable, *command]
  if os.path.isfile(first):
    with open(first, "rb") as f:
      if b"python" in f.readline():
        return [sys.executable, *command]
  return list(command)


def _pump(stream, prefix, out):
  for line in iter(stream.readline, ""):
    out.write(prefix + line)
    out.flush()
  stream.close()


def launch(num_workers, command, env=None, out=None, configs=None, prefixes=None):
  """Starts the workers, relays their output, returns the exit code (0 when all succeed).

  configs: one TF_CONFIG per worker (default: a loopback cluster, ``tf_configs``); prefixes: one
  command prefix per worker, e.g. ``ip netns exec NS`` to run it on a simulated host
  (tfdiffgan/netns.py), whose address its TF_CONFIG then names.
  """
  if num_workers < 1:
    raise LaunchError(f"--workers={num_workers}: need at least one worker.")
  if not command:
    raise LaunchError("no command to launch: bin/launch --workers=N -- bin/train --config=... "
                      "--workdir=... --config.train.strategy=multiworker")
  configs = list(configs) if configs is not None else tf_configs(num_workers)
  prefixes = list(prefixes) if prefixes is not None else [[]] * num_workers
  if len(configs) != num_workers or len(prefixes) != num_workers:
    raise LaunchError(f"{num_workers} workers but {len(configs)} TF_CONFIG(s) and "
                      f"{len(prefixes)} command prefix(es).")
  out = out or sys.stdout
  cmd = child_command(command)
  procs, pumps = [], []
  for i, (tf_config, prefix) in enumerate(zip(configs, prefixes)):
    child_env = dict(os.environ if env is None else env, TF_CONFIG=tf_config,
                     PYTHONUNBUFFERED="1")
    p = subprocess.Popen([*prefix, *cmd], env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, bufsize=1, start_new_session=True)
    procs.append(p)
    t = threading.Thread(target=_pump, args=(p.stdout, "" if i == 0 else f"[w{i}] ", out),
                         daemon=True)
    t.start()
    pumps.append(t)

  def stop_all(sig=signal.SIGTERM):
    for p in procs:
      if p.poll() is None:
        try:
          os.killpg(p.pid, sig)
        except ProcessLookupError:
          pass

  def on_signal(signum, frame):  # Ctrl-C / kill on the launcher reaches every worker
    del frame
    stop_all(signum)

  previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
  code = 0
  try:
    while True:
      codes = [p.poll() for p in procs]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i, code = failed[0]
        if any(c is None for c in codes):
          out.write(f"[launch] worker {i} exited with code {code}; stopping the others\n")
          out.flush()
          stop_all()
          deadline = time.time() + GRACE_SECONDS
          while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)
          stop_all(signal.SIGKILL)
        break
      if all(c == 0 for c in codes):
        break
      time.sleep(0.1)
    for p in procs:
      p.wait()
    for t in pumps:
      t.join(timeout=5)
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  return code


def main(argv=None):
  """bin/launch --workers=N -- COMMAND...: a tiny argument parser, since absl would take the
  child's flags as its own."""
  argv = list(sys.argv[1:] if argv is None else argv)
  usage = ("usage: bin/launch --workers=N -- bin/train --config=CONFIG --workdir=DIR "
           "--config.train.strategy=multiworker [--config.train.exchange=neighbors] ...\n"
           "       (installed: tfdiffgan-launch --workers=N -- tfdiffgan-train ...)")
  own = argv[:argv.index("--")] if "--" in argv else argv
  if any(flag in ("-h", "--help", "--helpfull") for flag in own):
    print(f"{__doc__.splitlines()[0]}\n\n{usage}")
    return 0
  if "--version" in own:
    print(f"tfdiffgan {tfdiffgan.__version__}")
    return 0
  if "--" not in argv:
    print(f"error: separate the launcher's flags from the command with '--'.\n{usage}",
          file=sys.stderr)
    return 2
  split = argv.index("--")
  own, command = argv[:split], argv[split + 1:]
  workers = None
  for flag in own:
    if flag.startswith("--workers="):
      try:
        workers = int(flag.split("=", 1)[1])
      except ValueError:
        workers = -1
    else:
      print(f"error: unknown launcher flag {flag!r}.\n{usage}", file=sys.stderr)
      return 2
  if workers is None or workers < 1:
    print(f"error: --workers=N (a positive number of worker processes) is required.\n{usage}",
          file=sys.stderr)
    return 2
  if not any("strategy=multiworker" in a for a in command):
    print("[launch] note: the command does not set --config.train.strategy=multiworker; each "
          "worker will train every agent on its own", file=sys.stderr)
  try:
    return launch(workers, command)
  except (LaunchError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
