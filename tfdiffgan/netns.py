"""Simulated hosts on one machine: network namespaces joined by veth links, optionally rate-limited.

  with netns.Hosts(2, rate="100mbit") as hosts:
    hosts.addresses        # ['10.77.12.1', '10.77.12.2']: each worker's own address
    hosts.prefix(0)        # ['ip', 'netns', 'exec', 'tfdg1234x56h0']: run a command on host 0
    hosts.launch(["bin/train", ...])  # bin/launch's launcher, worker i on host i
    hosts.counters()       # [{'tx_bytes': ..., 'rx_bytes': ...}, ...]: each host's link

Why: bin/launch runs its workers over loopback, where bytes cost nothing, so it cannot show what
the exchange's bytes cost on a real link. Here each worker gets its own network stack (its own
port space, its own address, one interface), and the bytes between workers cross a veth link
whose both directions a ``tbf`` qdisc can hold to a rate, e.g. "1gbit" or "100mbit", and whose
byte counters show what really went over the wire (TCP/IP headers and gRPC framing included).

Topology: two hosts are joined by one veth pair (each end ``eth0`` in its host). More hosts hang
off a bridge in an extra "switch" namespace, one veth each (``eth0`` in the host, ``pI`` in the
switch), so every host has one link, limited in both directions (the host's egress and the
switch's egress towards it). Addresses are 10.77.<subnet>.<i + 1>/24, in the namespaces only:
nothing is added to the machine's own network.

Namespace names carry a prefix and this process's id, so parallel runs never collide, and
``Hosts`` always deletes them on exit (exceptions, Ctrl-C and SIGTERM included); namespaces of a
dead process with the same prefix (a SIGKILL) are removed by the next ``Hosts``.
Needs root and iproute2 (``ip``, ``tc``); ``permitted()`` says whether this machine allows it.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

PREFIX = "tfdg"
PORT = 23456  # each namespace has its own port space: one fixed port serves every worker
# Whole 64 KiB segments fit (veth offloads hand tbf TSO packets that large) plus ~2 ms at the
# rate, so the bucket is never the bottleneck below the rate; queueing up to LATENCY before drops.
MIN_BURST_BYTES = 128 * 1024
LATENCY = "50ms"
_RATE = re.compile(r"^(\d+(?:\.\d+)?)([kmg]?)bit$")


class NetnsError(RuntimeError):
  """A namespace, link or qdisc cannot be created (not root, no iproute2, a bad rate)."""


def _run(*cmd, check=True):
  result = subprocess.run(cmd, capture_output=True, text=True)
  if check and result.returncode:
    raise NetnsError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
  return result


def permitted():
  """(True, '') when namespaces can be made here, else (False, why): adds and deletes a
  throwaway namespace, which is what needs root (CAP_SYS_ADMIN) and iproute2."""
  if shutil.which("ip") is None:
    return False, "iproute2's `ip` is not installed"
  if shutil.which("tc") is None:
    return False, "iproute2's `tc` is not installed"
  name = f"{PREFIX}{os.getpid()}probe"
  result = _run("ip", "netns", "add", name, check=False)
  if result.returncode:
    return False, f"`ip netns add` failed: {result.stderr.strip() or 'not root?'}"
  _run("ip", "netns", "del", name, check=False)
  return True, ""


def rate_bits(rate):
  """'100mbit' -> 100e6 (bits per second); tc's units, decimal as tc reads them."""
  match = _RATE.match(str(rate).lower())
  if not match:
    raise NetnsError(f"rate {rate!r}: expected e.g. '100mbit', '1gbit' or '500kbit'")
  return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]


def burst_bytes(rate):
  return max(MIN_BURST_BYTES, int(rate_bits(rate) / 8 * 0.002))


def namespaces(prefix=PREFIX):
  """Names of the existing namespaces that start with prefix."""
  out = _run("ip", "netns", "list", check=False).stdout
  return [line.split()[0] for line in out.splitlines()
          if line.strip() and line.split()[0].startswith(prefix)]


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_stale(prefix=PREFIX):
  """Deletes namespaces named prefix<pid>... whose creating process is gone (a run that was
  SIGKILLed could not clean up). Returns their names."""
  removed = []
  for name in namespaces(prefix):
    match = re.match(re.escape(prefix) + r"(\d+)", name)
    if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
      _delete(name)
      removed.append(name)
  return removed


def _sentinel(name, timeout=10):
  """An idle process inside namespace name (``sleep infinity``), once it is in there."""
  p = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "infinity"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  want = os.stat(f"/var/run/netns/{name}").st_ino
  deadline = time.time() + timeout
  while time.time() < deadline:
    try:
      if os.stat(f"/proc/{p.pid}/ns/net").st_ino == want:
        return p
    except OSError:
      pass
    if p.poll() is not None:
      break
    time.sleep(0.005)
  p.kill()
  p.wait()
  raise NetnsError(f"could not start a process in namespace {name} (ip netns exec ... sleep)")


def _dev_counters(pid, interface):
  """{'tx_bytes', 'rx_bytes'} of interface in the network namespace of process pid."""
  with open(f"/proc/{pid}/net/dev") as f:
    for line in f:
      name, _, fields = line.partition(":")
      if name.strip() == interface:
        fields = fields.split()
        return {"rx_bytes": int(fields[0]), "tx_bytes": int(fields[8])}
  raise NetnsError(f"no interface {interface} in /proc/{pid}/net/dev")


def _delete(name):
  """Ends what still runs inside the namespace (only our own workers can be there), then deletes
  it: its veth ends, bridge and qdiscs go with it."""
  pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
  for pid in pids:
    try:
      os.kill(int(pid), signal.SIGKILL)
    except (ProcessLookupError, ValueError):
      pass
  _run("ip", "netns", "del", name, check=False)


class Hosts:
  """N hosts (namespaces) on one link each; a context manager that always tears them down.

  rate: None (unlimited) or a tc rate such as "1gbit", applied to both directions of every link.
  subnet: the third byte of the addresses (default from the pid, only to tell runs apart in
  logs: two runs' namespaces are separate networks, so equal subnets do not clash).
  """

  def __init__(self, num_hosts, rate=None, prefix=PREFIX, subnet=None):
    if num_hosts < 1:
      raise NetnsError(f"need at least one host, got {num_hosts}")
    if rate is not None:
      rate_bits(rate)
    self.num_hosts, self.rate = int(num_hosts), rate
    tag = f"{prefix}{os.getpid()}x{id(self) % 10000}"  # several Hosts in one process
    self.prefix_name = prefix
    self.names = [f"{tag}h{i}" for i in range(self.num_hosts)]
    self.switch = f"{tag}sw" if self.num_hosts > 2 else None
    self.subnet = subnet if subnet is not None else os.getpid() % 250 + 1
    self.addresses = [f"10.77.{self.subnet}.{i + 1}" for i in range(self.num_hosts)]
    self.interface = "eth0" if self.num_hosts > 1 else "lo"  # one host: its workers share lo
    self._created = []
    self._sentinels = []  # one idle process per host: its /proc/PID/net/dev is the host's
    self._previous_sigterm = None

  # -- set-up and teardown -------------------------------------------------------------------
  def __enter__(self):
    self._catch_sigterm()
    try:
      remove_stale(self.prefix_name)
      self._create()
    except BaseException:
      self.close()
      raise
    return self

  def __exit__(self, *exc):
    self.close()
    return False

  def _catch_sigterm(self):
    """A SIGTERM (e.g. a CI timeout) raises in the main thread, so ``with`` still tears down."""
    if threading.current_thread() is not threading.main_thread():
      return

    def on_term(signum, frame):
      del frame
      raise KeyboardInterrupt(f"signal {signum}")

    self._previous_sigterm = signal.signal(signal.SIGTERM, on_term)

  def _add_namespace(self, name):
    _run("ip", "netns", "add", name)
    self._created.append(name)
    _run("ip", "-n", name, "link", "set", "lo", "up")

  def _create(self):
    for name in self.names:
      self._add_namespace(name)
    if self.switch is None:
      if self.num_hosts == 2:
        a, b = self.names
        _run("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", b)
        self._limit(a, "eth0")
        self._limit(b, "eth0")
    else:
      sw = self.switch
      self._add_namespace(sw)
      _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0",
           "forward_delay", "0")
      _run("ip", "-n", sw, "link", "set", "br0", "up")
      for i, name in enumerate(self.names):
        port = f"p{i}"
        _run("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", port,
             "netns", sw)
        _run("ip", "-n", sw, "link", "set", port, "master", "br0")
        _run("ip", "-n", sw, "link", "set", port, "up")
        self._limit(name, "eth0")
        self._limit(sw, port)
    if self.num_hosts > 1:
      for name, address in zip(self.names, self.addresses):
        _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", name, "link", "set", "eth0", "up")
    for name in self.names:
      self._sentinels.append(_sentinel(name))

  def _limit(self, namespace, device):
    if self.rate is None:
      return
    _run("tc", "-n", namespace, "qdisc", "replace", "dev", device, "root", "tbf", "rate",
         str(self.rate), "burst", str(burst_bytes(self.rate)), "latency", LATENCY)

  def _links(self):
    """(namespace, device) of every link end: each host's eth0 and the switch's ports."""
    if self.num_hosts == 1:
      return []
    return [(n, "eth0") for n in self.names] + [
        (self.switch, f"p{i}") for i in range(self.num_hosts) if self.switch]

  def set_rate(self, rate):
    """Changes every link's limit while the hosts run (None: unlimited), so one run can be
    timed at several rates without paying its start-up and end again; packets already queued
    leave at the old rate. The links change together (one tc process each, in parallel)."""
    if rate is not None:
      rate_bits(rate)
    self.rate = rate
    procs = []
    for namespace, device in self._links():
      change = (["del", "dev", device, "root"] if rate is None else
                ["replace", "dev", device, "root", "tbf", "rate", str(rate), "burst",
                 str(burst_bytes(rate)), "latency", LATENCY])
      procs.append(subprocess.Popen(["tc", "-n", namespace, "qdisc", *change],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
      err = p.communicate()[1]
      if p.returncode and rate is not None:
        raise NetnsError(f"tc: {p.args}: {err.strip()}")

  def close(self):
    """Deletes every namespace this object made (idempotent)."""
    while self._sentinels:
      p = self._sentinels.pop()
      p.kill()
      p.wait()
    while self._created:
      _delete(self._created.pop())
    if self._previous_sigterm is not None:
      signal.signal(signal.SIGTERM, self._previous_sigterm)
      self._previous_sigterm = None

  # -- use -----------------------------------------------------------------------------------
  def prefix(self, i):
    """The command prefix that runs a program on host i."""
    return ["ip", "netns", "exec", self.names[i]]

  def tf_configs(self, workers=None, port=PORT):
    """One TF_CONFIG (a JSON string) per worker. On N > 1 hosts, worker i runs on host i and the
    cluster is the hosts' own addresses; on one host, ``workers`` workers share its loopback
    (bin/launch's cluster, with lo's counters counting this run's bytes alone)."""
    workers = self.num_hosts if workers is None else int(workers)
    if self.num_hosts == 1:
      cluster = {"worker": [f"127.0.0.1:{port + i}" for i in range(workers)]}
    elif workers == self.num_hosts:
      cluster = {"worker": [f"{a}:{port}" for a in self.addresses]}
    else:
      raise NetnsError(f"{workers} workers on {self.num_hosts} hosts: one worker per host, or "
                       "every worker on one host")
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(workers)]

  def launch(self, command, workers=None, env=None, out=None, port=PORT):
    """bin/launch's launcher (output merged, all stopped when one fails) with worker i run on
    host i (every worker on host 0 when there is one host); returns the exit code."""
    from tfdiffgan import launch as launch_lib  # pylint: disable=g-import-not-at-top
    configs = self.tf_configs(workers, port)
    prefixes = [self.prefix(i if self.num_hosts > 1 else 0) for i in range(len(configs))]
    return launch_lib.launch(len(configs), command, env=env, out=out, configs=configs,
                             prefixes=prefixes)

  def counters(self):
    """Each host's byte counters, [{'tx_bytes', 'rx_bytes'}] in host order: what crossed its
    link, eth0 (Ethernet, IP and TCP headers included; veth and lo count GSO segments of up to
    64 KiB, one set of headers each); lo for one host. Read from /proc/PID/net/dev of a process
    inside each host: a file read, no process started, so it can be read while a busy run
    goes on (as ``ip netns exec NS cat /sys/class/net/eth0/statistics/tx_bytes`` would say)."""
    return [_dev_counters(p.pid, self.interface) for p in self._sentinels]


class CountersAtRows:
  """Snapshots the hosts' counters each time a JSON-lines file (a run's log.jsonl) gains a row,
  from a thread, while the run goes on: the bytes between two rows are those of the iterations
  between them, without the run's start-up (connections, group set-up) and end (final gathers).

    with netns.CountersAtRows(hosts, f"{workdir}/log.jsonl") as watch:
      hosts.launch(...)
    watch.samples   # [(row, seconds since start, counters)], one per row

  ``on_row(row)``, when given, is called in the thread after each snapshot.

  A row is written after its iteration's last collective, so a snapshot taken within
  ``interval`` of it misses nothing of that iteration; the next iteration's exchange starts
  only after its discriminator gradients, so it rarely leaks in.
  """

  def __init__(self, hosts_, path, interval=0.01, on_row=None):
    self.hosts, self.path, self.interval, self.on_row = hosts_, path, interval, on_row
    self.samples = []
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._offset, self._partial, self._t0 = 0, "", None
    self._error = None

  def __enter__(self):
    self._t0 = time.perf_counter()
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    if self._error is not None and exc[0] is None:
      raise self._error
    return False

  def _read(self):
    """New complete rows since the last call."""
    try:
      with open(self.path) as f:
        f.seek(self._offset)
        text = f.read()
        self._offset = f.tell()
    except OSError:
      return []
    text, self._partial = self._partial + text, ""
    lines = text.split("\n")
    self._partial = lines.pop()  # "" after a complete last line
    return [json.loads(line) for line in lines if line.strip()]

  def _poll(self):
    try:  # a snapshot late by a scheduler slice on a loaded machine shifts bytes between rows
      os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
    except OSError:
      pass
    try:
      while not self._stop.is_set():
        rows = self._read()
        if rows:
          counters = self.hosts.counters()
          now = time.perf_counter() - self._t0
          self.samples += [(row, now, counters) for row in rows]
          if self.on_row is not None:  # e.g. the next window's rate, after the snapshot
            self.on_row(rows[-1])
        self._stop.wait(self.interval)
    except Exception as e:  # pylint: disable=broad-except  (raised again by __exit__)
      self._error = e

  def between(self, first, last):
    """(iterations, [per-host tx bytes], [per-host rx bytes]) between the rows of iterations
    first and last."""
    at = {row["iteration"]: counters for row, _, counters in self.samples}
    a, b = at[first], at[last]
    return (last - first, [y["tx_bytes"] - x["tx_bytes"] for x, y in zip(a, b)],
            [y["rx_bytes"] - x["rx_bytes"] for x, y in zip(a, b)])
