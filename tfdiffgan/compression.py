"""Compressed diffusion: the compressors of ACTC (adapt-compress-then-combine) and their state.

ACTC (Carpentiero, Matta, Sayed, arXiv 2112.02129) replaces the combine of eq. (10b) by

  adapt     psi_k = w_k - mu grad J_k(w_k)                  (eq. 10a, unchanged)
  compress  q_k  <- q_k + zeta * C_k(psi_k - q_k)           only C_k(psi_k - q_k) is sent
  combine   w_k  =  (1 - gamma) psi_k + gamma * sum_l a_lk q_l

Every receiver rebuilds q_l from the same compressed increments, so each process keeps q for the
agents in its reach (with the local exchange, every agent). ``none`` never builds any of this:
the step runs today's ATC code path, bit for bit.

A compressor works on a flat float32 tensor x [L, P], one row per agent, with one stateless seed
[2] per row (agent k's ``seeds.quantizer`` and the round): ``compress(x, seeds)`` is what is sent,
``decompress(payload, seeds)`` what every receiver rebuilds (with the same seeds), ``row_bytes(P)`` the bytes one row costs
on a wire that packs it (b-bit integers packed, float32 scales and values, int32 indices):

  none, identity  4 P                       (identity: the lossless compressor of the tests)
  quantize        ceil(b P / 8) + 4 ceil(P / block)    (block = 0: one scale per row)
  topk            8 k,  k = ceil(fraction P)  (a float32 value and an int32 index each)
  randk           4 k,  k = ceil(fraction P)  (the indices follow from the shared seed)

In one process the payload is held unpacked (an integer per level, not b bits); the bytes above
are what ``traffic["payload_per_agent"]`` counts. ``to_wire`` packs it for a transport (b-bit
levels in int32 words): what the allgather exchange of in-process workers (mirrored) moves.
"""

import math

import tensorflow as tf

from tfdiffgan import seeds as seeds_lib
from tfdiffgan.errors import ConfigError

KINDS = ("none", "identity", "quantize", "topk", "randk")
BITS = (1, 2, 3, 4, 5, 6, 7, 8, 16)
SUPPORTED_EXCHANGES = ("local", "allgather")  # allgather: in-process replicas (mirrored)


def _rows(x, seeds, fn):
  """fn(row, seed) for each row of x [L, P] with its own seed: agent k's draw depends on its
  seed only, never on which rows share its tensor (placement-independent)."""
  return [fn(x[i], seeds[i]) for i in range(x.shape[0])]


class Identity:
  """Sends x itself: lossless, for tests (ACTC with it and zeta = gamma = 1 is ATC)."""

  def compress(self, x, seeds):
    del seeds
    return x

  def decompress(self, payload, seeds):
    del seeds
    return payload

  def roundtrip(self, x, seeds):
    return self.decompress(self.compress(x, seeds), seeds)

  def row_bytes(self, P):
    return 4 * P


class Quantize(Identity):
  """Randomized (dithered) b-bit uniform quantization with one scale per block of coordinates.

  In a block with scale s = max |x|, the 2^b levels -s + j Delta (j = 0 .. n, n = 2^b - 1,
  Delta = 2 s / n) cover [-s, s]; x is sent as the level below it with probability 1 - f and the
  level above with probability f, f = (x + s) / Delta - floor((x + s) / Delta). So E[Q(x)] = x
  and Var[Q(x)] = f (1 - f) Delta^2 <= Delta^2 / 4 per coordinate. An all-zero block sends 0.
  """

  def __init__(self, bits, block):
    self.bits, self.block = int(bits), int(block)
    self.levels = 2 ** self.bits - 1

  def _blocks(self, x):
    P = x.shape[-1]
    B = self.block or P
    nb = -(-P // B)
    return tf.reshape(tf.pad(x, [[0, 0], [0, nb * B - P]]), [x.shape[0], nb, B]), P

  def compress(self, x, seeds):
    xb, P = self._blocks(x)                                   # [L, nb, B]
    scale = tf.reduce_max(tf.abs(xb), axis=-1, keepdims=True)  # [L, nb, 1]
    step = 2.0 * scale / self.levels
    y = tf.math.divide_no_nan(xb + scale, step)               # in [0, n]
    u = tf.stack(_rows(y, seeds, lambda r, s: tf.random.stateless_uniform(r.shape, s)))
    q = tf.clip_by_value(tf.floor(y + u), 0.0, float(self.levels))
    dtype = tf.uint8 if self.bits <= 8 else tf.uint16
    return {"levels": tf.cast(q, dtype), "scale": scale[..., 0], "P": P}

  def decompress(self, payload, seeds):
    del seeds
    scale = payload["scale"][..., None]
    x = tf.cast(payload["levels"], tf.float32) * (2.0 * scale / self.levels) - scale
    return tf.reshape(x, [x.shape[0], -1])[:, :payload["P"]]

  def row_bytes(self, P):
    B = self.block or P
    return -(-self.bits * P // 8) + 4 * -(-P // B)


class TopK(Identity):
  """Keeps the k = ceil(fraction P) coordinates of largest |x| (biased; no randomness)."""

  def __init__(self, fraction):
    self.fraction = float(fraction)

  def keep(self, P):
    return max(1, min(P, math.ceil(self.fraction * P)))

  def compress(self, x, seeds):
    del seeds
    _, index = tf.math.top_k(tf.abs(x), self.keep(x.shape[-1]))
    return {"index": index, "value": tf.gather(x, index, batch_dims=1), "P": x.shape[-1]}

  def decompress(self, payload, seeds):
    del seeds
    return self._scatter(payload["index"], payload["value"], payload["P"])

  @staticmethod
  def _scatter(index, value, P):
    L, k = index.shape
    rows = tf.tile(tf.range(L)[:, None], [1, k])
    return tf.scatter_nd(tf.stack([rows, index], -1), value, [L, P])

  def row_bytes(self, P):
    return 8 * self.keep(P)


class RandK(TopK):
  """Keeps k = ceil(fraction P) coordinates drawn uniformly without replacement from the row's
  seed, scaled by P / k: each coordinate is kept with probability k / P, so E[C(x)] = x. The
  receiver draws the same indices from the same seed, so only the values are sent."""

  def _index(self, seeds, L, P):
    k = self.keep(P)
    return tf.stack([tf.math.top_k(tf.random.stateless_uniform([P], seeds[i]), k).indices
                     for i in range(L)])

  def compress(self, x, seeds):
    L, P = x.shape
    index = self._index(seeds, L, P)
    return {"value": tf.gather(x, index, batch_dims=1) * (P / self.keep(P)), "P": P}

  def decompress(self, payload, seeds):
    value, P = payload["value"], payload["P"]
    return self._scatter(self._index(seeds, value.shape[0], P), value, P)

  def roundtrip(self, x, seeds):  # one draw of the indices serves both ends
    L, P = x.shape
    index = self._index(seeds, L, P)
    return self._scatter(index, tf.gather(x, index, batch_dims=1) * (P / self.keep(P)), P)

  def row_bytes(self, P):
    return 4 * self.keep(P)


def pack_bits(levels, bits):
  """[L, P] integers < 2^bits -> [L, ceil(bits P / 32)] int32 words, bits per level."""
  L, P = levels.shape
  x = tf.cast(levels, tf.int64)
  stream = tf.reshape(tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(x[..., None], tf.range(bits, dtype=tf.int64)), 1), [L, P * bits])
  words = -(-P * bits // 32)
  stream = tf.pad(stream, [[0, 0], [0, words * 32 - P * bits]])
  packed = tf.reduce_sum(tf.bitwise.left_shift(tf.reshape(stream, [L, words, 32]),
                                               tf.range(32, dtype=tf.int64)), axis=-1)
  return tf.cast(tf.bitcast(tf.cast(packed, tf.uint32), tf.int32), tf.int32)


def unpack_bits(words, bits, P):
  """Inverse of pack_bits: [L, W] int32 -> [L, P] int32 levels."""
  L, W = words.shape
  x = tf.cast(tf.bitcast(words, tf.uint32), tf.int64)
  stream = tf.bitwise.bitwise_and(tf.bitwise.right_shift(x[..., None],
                                                         tf.range(32, dtype=tf.int64)), 1)
  stream = tf.reshape(stream, [L, W * 32])[:, :P * bits]
  levels = tf.reduce_sum(tf.bitwise.left_shift(tf.reshape(stream, [L, P, bits]),
                                               tf.range(bits, dtype=tf.int64)), axis=-1)
  return tf.cast(levels, tf.int32)


def to_wire(compressor, payload):
  """The payload as the tensors a collective moves (float32, int32): b-bit levels packed."""
  if isinstance(compressor, Quantize):
    P = payload["P"]
    levels = tf.reshape(payload["levels"], [payload["levels"].shape[0], -1])[:, :P]
    return {"scale": payload["scale"], "words": pack_bits(levels, compressor.bits)}
  if isinstance(payload, dict):
    return {key: value for key, value in payload.items() if key != "P"}
  return {"x": payload}


def from_wire(compressor, wire, P):
  """Inverse of to_wire for the gathered tensors (every agent's rows)."""
  if isinstance(compressor, Quantize):
    scale = wire["scale"]
    L, nb = scale.shape
    B = compressor.block or P
    levels = unpack_bits(wire["words"], compressor.bits, P)
    levels = tf.reshape(tf.pad(levels, [[0, 0], [0, nb * B - P]]), [L, nb, B])
    dtype = tf.uint8 if compressor.bits <= 8 else tf.uint16
    return {"levels": tf.cast(levels, dtype), "scale": scale, "P": P}
  if "x" in wire:
    return wire["x"]
  return {**wire, "P": P}


def make_compressor(kind, bits=8, fraction=0.1, block=256):
  if kind == "identity":
    return Identity()
  if kind == "quantize":
    return Quantize(bits, block)
  if kind == "topk":
    return TopK(fraction)
  if kind == "randk":
    return RandK(fraction)
  raise ValueError(f"no compressor {kind!r}; choose one of {KINDS[1:]} (none builds none).")


class ACTC:
  """Adapt-compress-then-combine state of this process: q for each agent in reach and network,
  and each agent's round counter (its quantizer's stream: seeds.quantizer(seed, k) and the round).

  q starts at zero: agent l's initial weights are known to agent l alone, so a receiver's honest
  estimate of them before any message is 0 (as in ACTC and CHOCO-SGD); a q started at the
  initial weights would need one full-precision send first. With gamma = 1 the first combines
  therefore pull w towards the compressed increments only; zeta, gamma < 1 soften that start.

  Only trainable weights are compressed. BatchNorm moving statistics (``models.
  combined_variables`` lists them after the weights) are combined uncompressed, as in ATC:
  they are 2 numbers per channel, and a mean and a variance rebuilt from lossy increments from
  q = 0 could go near zero or negative, which the weights' estimate tolerates and a variance
  does not. Their 4 bytes each are counted in the payload.
  """

  def __init__(self, compressor, zeta, gamma, seed, agent_ids, sizes, copies=None):
    """sizes: {'d': P_D, 'g': P_G}, the flat size of each network's trainable weights.
    copies: {worker: device} when several in-process workers (mirrored replicas) each keep
    their own copy of every agent's q (no worker reads another's variables), else None."""
    self.compressor, self.zeta, self.gamma = compressor, float(zeta), float(gamma)
    self.agent_ids = list(agent_ids)
    self.stream = {k: seeds_lib.quantizer(seed, k) for k in self.agent_ids}

    def make_q(tag):
      return {net: {k: tf.Variable(tf.zeros([P]), trainable=False, name=f"q_{net}_{k}{tag}")
                    for k in self.agent_ids} for net, P in sizes.items()}

    self.copies = {}
    for worker, device in (copies or {}).items():
      with tf.device(device):
        self.copies[worker] = make_q(f"_worker_{worker}")
    self.q = self.copies[0] if self.copies else make_q("")
    self.rounds = {k: tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                  name=f"compression_round_{k}") for k in self.agent_ids}

  def trackables(self, k):
    out = {"q_d": self.q["d"][k], "q_g": self.q["g"][k], "round": self.rounds[k]}
    for worker, q in self.copies.items():
      if worker:
        out.update({f"q_d_worker_{worker}": q["d"][k], f"q_g_worker_{worker}": q["g"][k]})
    return out

  def row_bytes(self, P, bn_numbers):
    return self.compressor.row_bytes(P) + 4 * bn_numbers

  def step(self, net, psi, own, combine, active=None):
    """One ACTC round of ``net`` for the agents ``own`` (global ids, rows of psi [L, P]):
    updates their q and returns w [L, P]. ``combine(q_all)`` mixes every agent's q [K, P] into
    the own agents' sum_l a_lk q_l [L, P] (the exchange). ``active`` [L] 0/1: an offline agent
    sends nothing (its q stays) and keeps w_k = psi_k."""
    q_own = tf.stack([self.q[net][k].read_value() for k in own])
    seeds = tf.stack([tf.stack([tf.constant(self.stream[k], tf.int64), self.rounds[k].assign_add(1)])
                      for k in own])
    increment = self.compressor.roundtrip(psi - q_own, seeds)
    if active is not None:
      increment *= active[:, None]
    q_new = q_own + self.zeta * increment
    with tf.control_dependencies([self.q[net][k].assign(q_new[j]) for j, k in enumerate(own)]):
      q_all = tf.stack([self.q[net][k].read_value() for k in self.agent_ids])
    w = (1.0 - self.gamma) * psi + self.gamma * combine(q_all)
    if active is not None:
      w = tf.where(active[:, None] > 0, w, psi)
    return w


  def gathered_step(self, net, psi, own, worker, gather, combine, active=None):
    """step() for a worker that holds only its agents ``own``: it sends their compressed
    increments (``gather(payload)`` returns every worker's, in agent order), rebuilds every
    agent's increment from the payloads and the shared seeds, and updates its own copy of q.
    ``active`` [K] 0/1 for every agent."""
    q = self.copies[worker][net]
    q_all = tf.stack([q[k].read_value() for k in self.agent_ids])
    q_own = tf.gather(q_all, [self.agent_ids.index(k) for k in own])
    rounds = [self.rounds[k].assign_add(1) for k in own]
    seeds = tf.stack([tf.stack([tf.constant(self.stream[k], tf.int64), t])
                      for k, t in zip(own, rounds)])
    payload = gather(self.compressor.compress(psi - q_own, seeds))
    # every agent's counter is the same round: the owners' seeds follow from this worker's
    every = tf.stack([tf.stack([tf.constant(self.stream[k], tf.int64), rounds[0]])
                      for k in self.agent_ids])
    increment = self.compressor.decompress(payload, every)
    if active is not None:
      increment *= active[:, None]
    q_new = q_all + self.zeta * increment
    with tf.control_dependencies([q[k].assign(q_new[i]) for i, k in enumerate(self.agent_ids)]):
      mixed = combine(tf.identity(q_new))
    own_active = None if active is None else tf.gather(active, own)
    w = (1.0 - self.gamma) * psi + self.gamma * mixed
    if own_active is not None:
      w = tf.where(own_active[:, None] > 0, w, psi)
    return w


def make_actc(c, seed, agent_ids, sizes, copies=None):
  """The ACTC state of the config section ``c`` (config.compression, or a dict of its fields),
  or None for kind = none (today's ATC)."""
  if c is None or c["kind"] == "none":
    return None
  return ACTC(make_compressor(c["kind"], c["bits"], c["fraction"], c["block"]), c["zeta"],
              c["gamma"], seed, agent_ids, sizes, copies)


def check_config(config):
  """compression.*: a known kind, bits in BITS, fraction in (0, 1], block >= 0,
  zeta and gamma in (0, 1]; compression needs one process (default or mirrored) for now."""
  c = config.compression
  if c.kind not in KINDS:
    raise ConfigError(f"compression.kind={c.kind!r} is not one of {KINDS}; set "
                      "--config.compression.kind=...")
  if c.bits not in BITS or isinstance(c.bits, bool):
    raise ConfigError(f"compression.bits={c.bits!r} is not one of {BITS}.")
  if not isinstance(c.fraction, (int, float)) or not 0 < c.fraction <= 1:
    raise ConfigError(f"compression.fraction={c.fraction!r} must be in (0, 1].")
  if isinstance(c.block, bool) or not isinstance(c.block, int) or c.block < 0:
    raise ConfigError(f"compression.block={c.block!r} must be a non-negative integer "
                      "(0: one scale per agent and network).")
  for field in ("zeta", "gamma"):
    value = c[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
      raise ConfigError(f"compression.{field}={value!r} must be in (0, 1].")
  if c.kind == "none":
    return
  if config.train.mode not in ("diffusion", "gossip", "fusion"):
    raise ConfigError(f"compression.kind={c.kind} compresses what agents exchange, but "
                      f"train.mode={config.train.mode} exchanges nothing to compress; use "
                      "diffusion, gossip or fusion, or compression.kind=none.")
  if config.train.strategy == "multiworker":
    raise ConfigError(f"compression.kind={c.kind} is supported with train.strategy=default "
                      "(local exchange) and mirrored (allgather), not multiworker yet.")
