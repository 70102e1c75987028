"""Compressed diffusion: the compressors of ACTC (adapt-compress-then-combine) and their state.

ACTC (Carpentiero, Matta, Sayed, arXiv 2112.02129) replaces the combine of eq. (10b) by

  adapt     psi_k = w_k - mu grad J_k(w_k)                  (eq. 10a, unchanged)
  compress  q_k  <- q_k + zeta * C_k(psi_k - q_k)           only C_k(psi_k - q_k) is sent
  combine   w_k  =  (1 - gamma) psi_k + gamma * sum_l a_lk q_l

or, with ``combine = choco`` (CHOCO-SGD's gossip step, Koloskova, Stich, Jaggi, ICML 2019),

  combine   w_k  =  psi_k + gamma * (sum_l a_lk q_l - q_k)

which adds each agent's own compression error back (w_k = sum_l a_lk q_l + psi_k - q_k at
gamma = 1): as A is doubly stochastic, sum_k w_k = sum_k psi_k, so no quantization noise
reaches the network's average, only the agents' disagreement. Both are ATC with a lossless
compressor at zeta = gamma = 1.

Every receiver rebuilds q_l from the same compressed increments, so each worker keeps q for the
agents in its reach (allgather and local: every agent; neighbors: its own and its neighbour
workers'). ``none`` never builds any of this: the step runs today's ATC code path, bit for bit.

A compressor works on a flat float32 tensor x [L, P], one row per agent, with one stateless seed
[2] per row (agent k's ``seeds.quantizer`` and the round): ``compress(x, seeds)`` is what is sent,
``decompress(payload, seeds)`` what every receiver rebuilds (with the same seeds),
``row_bytes(P)`` the bytes one row costs on the wire (``to_wire``: b-bit integers packed into
int32 words, float32 scales and values, int32 indices):

  none, identity  4 P                       (identity: the lossless compressor of the tests)
  quantize        4 words(P, b) + 4 ceil(P / block)  (b P / 8 to within 4 b bytes; block = 0:
                                                      one scale per row; scale_bits = 8: a byte
                                                      per block and 4 per row, in words)
  topk            8 k,  k = ceil(fraction P)  (a float32 value and an int32 index each)
  randk           4 k,  k = ceil(fraction P)  (the indices follow from the shared seed)

In one replica the payload is held unpacked (an integer per level, not b bits); the bytes above
are what ``traffic["payload_per_agent"]`` counts. Between workers ``to_wire`` packs it into one
int32 row per agent (row_bytes / 4 words) that every exchange moves as it moves phi
(``exchange.gather_rows``): in-process replicas (mirrored) and worker processes (multiworker,
allgather or neighbors) alike, so the exchange's byte counters count the payload itself.
"""

import contextlib
import math

import tensorflow as tf

from tfdiffgan import seeds as seeds_lib
from tfdiffgan.errors import ConfigError

KINDS = ("none", "identity", "quantize", "topk", "randk")
BITS = (1, 2, 3, 4, 5, 6, 7, 8, 16)
SCALE_BITS = (32, 8)
DITHERS = ("stochastic", "subtractive")
COMBINES = ("actc", "choco")
STATISTICS = ("float32", "local")


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

  dither = subtractive: the receivers draw the sender's dither u from the same seed and rebuild
  x^ = (j + 1/2 - u) Delta - s from the same level j. The error is then uniform on
  [-Delta/2, Delta/2] whatever x is (subtractive dither: Schuchman 1964; Gray and Stockham, IEEE
  Trans. IT 39, 1993), so E[x^] = x and Var = Delta^2 / 12: half the mean f (1 - f) Delta^2 of
  stochastic rounding, for the same bits on the wire (only decompress changes).

  scale_bits = 32 sends each s as float32. scale_bits = 8 sends one float32 per row, m = the
  largest s, and each block's scale as a byte c: s' = m 2^(-c/16) >= s, the smallest such step
  of 2^(1/16) (c <= 254; c = 255: an all-zero block). The levels then cover [-s', s'] ⊇ [-s, s],
  so Q stays unbiased; Delta grows by at most 2^(1/16) (4.4%). A float32 scale costs 1/8 bit a
  weight at block 256, which alone puts 4 bits above 1/8 of float32; a byte costs 1/32.
  """

  ZERO_CODE = 255  # scale_bits = 8: the byte of an all-zero block

  def __init__(self, bits, block, scale_bits=32, dither="stochastic"):
    self.bits, self.block, self.scale_bits = int(bits), int(block), int(scale_bits)
    self.dither = dither
    self.levels = 2 ** self.bits - 1

  @staticmethod
  def _uniform(shape, seeds):
    """The dither [L, *shape], row i from seeds[i] alone: agent k's draw never depends on which
    rows share its tensor (placement-independent), and a receiver draws the same."""
    return tf.stack([tf.random.stateless_uniform(shape, seeds[i]) for i in range(seeds.shape[0])])

  def _blocks(self, x):
    P = x.shape[-1]
    B = self.block or P
    nb = -(-P // B)
    return tf.reshape(tf.pad(x, [[0, 0], [0, nb * B - P]]), [x.shape[0], nb, B]), P

  @staticmethod
  def _from_code(code, top):
    """s' = top 2^(-code/16) [L, nb] (0 for ZERO_CODE): the one function sender and receivers
    apply to the same bytes, so both quantize with the same s'."""
    s = top * tf.pow(2.0, -tf.cast(code, tf.float32) / 16.0)
    return tf.where(code == Quantize.ZERO_CODE, tf.zeros_like(s), s)

  def _scale(self, xb):
    """The scale of each block [L, nb] and the payload fields that send it."""
    s = tf.reduce_max(tf.abs(xb), axis=-1)
    if self.scale_bits == 32:
      return s, {"scale": s}
    top = tf.reduce_max(s, axis=-1, keepdims=True)                        # [L, 1]
    # the largest c with top 2^(-c/16) >= s; blocks below the range take the smallest scale
    c = tf.floor(16.0 * tf.math.log(tf.math.divide_no_nan(top, s)) / math.log(2.0))
    c = tf.cast(tf.clip_by_value(c, 0.0, self.ZERO_CODE - 1.0), tf.int32)
    c = tf.where((c > 0) & (self._from_code(c, top) < s), c - 1, c)     # float32 rounding
    code = tf.cast(tf.where(s > 0, c, self.ZERO_CODE), tf.uint8)
    return self._from_code(code, top), {"scale_code": code, "scale_top": top[:, 0]}

  def sent_scale(self, payload):
    """The scale [L, nb] every block of the payload was quantized with (s, or s')."""
    if self.scale_bits == 32:
      return payload["scale"]
    return self._from_code(payload["scale_code"], payload["scale_top"][:, None])

  def compress(self, x, seeds):
    xb, P = self._blocks(x)                                   # [L, nb, B]
    scale, fields = self._scale(xb)
    scale = scale[..., None]                                  # [L, nb, 1]
    step = 2.0 * scale / self.levels
    y = tf.math.divide_no_nan(xb + scale, step)               # in [0, n]
    u = self._uniform(y.shape[1:], seeds)
    q = tf.clip_by_value(tf.floor(y + u), 0.0, float(self.levels))
    dtype = tf.uint8 if self.bits <= 8 else tf.uint16
    # a subtractive receiver in this process reuses u; to_wire never sends it, so a receiver
    # elsewhere draws it again from the seeds (the same numbers)
    dither = {"dither": u} if self.dither == "subtractive" else {}
    return {"levels": tf.cast(q, dtype), **fields, **dither, "P": P}

  def decompress(self, payload, seeds):
    scale = self.sent_scale(payload)[..., None]
    levels = tf.cast(payload["levels"], tf.float32)
    if self.dither == "subtractive":
      u = payload["dither"] if "dither" in payload else self._uniform(levels.shape[1:], seeds)
      levels += 0.5 - u
    x = levels * (2.0 * scale / self.levels) - scale
    return tf.reshape(x, [x.shape[0], -1])[:, :payload["P"]]

  def scale_words(self, P):
    """int32 words of the scales on the wire: a float32 per block, or a byte per block and one
    float32 for the row."""
    nb = -(-P // (self.block or P))
    return nb if self.scale_bits == 32 else 1 + words(nb, 8)

  def row_bytes(self, P):
    return 4 * (words(P, self.bits) + self.scale_words(P))


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

  def row_bytes(self, P):
    return 4 * self.keep(P)


def _fields(bits):
  """b = 3, 5, 6, 7 as a sum of powers of two (2 + 1, 4 + 1, ...), each with its bit offset in
  the level: every field has a width that divides 32, so a word holds a whole number of them."""
  widths = [1 << i for i in range(5) if bits >> i & 1]
  return list(zip(widths, [sum(widths[:i]) for i in range(len(widths))]))


def words(P, bits):
  """int32 words of P b-bit levels on the wire (pack_bits): ceil(b P / 32) to within one word
  per field of b."""
  return sum(-(-P // (32 // width)) for width, _ in _fields(bits))


def pack_bits(levels, bits):
  """[L, P] integers < 2^bits -> [L, words(P, bits)] int32.

  Each field of b (``_fields``: bits 0-1 and bit 2 of a 3-bit level, say) is packed alone, k =
  32 // width fields to a word, field j of a word at bit width j: one shift and one sum over an
  axis of k, with no stream of b P single bits. A sum of distinct powers of two is their OR."""
  L, P = levels.shape
  x = tf.cast(levels, tf.int64)
  packed = []
  for width, offset in _fields(bits):
    k = 32 // width
    field = tf.bitwise.bitwise_and(tf.bitwise.right_shift(x, offset), 2 ** width - 1)
    field = tf.reshape(tf.pad(field, [[0, 0], [0, -(-P // k) * k - P]]), [L, -1, k])
    packed.append(tf.reduce_sum(tf.bitwise.left_shift(
        field, width * tf.range(k, dtype=tf.int64)), -1))
  return tf.bitcast(tf.cast(tf.concat(packed, axis=1), tf.uint32), tf.int32)


def unpack_bits(packed, bits, P):
  """Inverse of pack_bits: [L, words(P, bits)] int32 -> [L, P] int32 levels."""
  L = packed.shape[0]
  x = tf.cast(tf.bitcast(packed, tf.uint32), tf.int64)
  levels, at = 0, 0
  for width, offset in _fields(bits):
    k, n = 32 // width, -(-P // (32 // width))
    field = tf.bitwise.bitwise_and(tf.bitwise.right_shift(
        x[:, at:at + n, None], width * tf.range(k, dtype=tf.int64)), 2 ** width - 1)
    levels += tf.bitwise.left_shift(tf.reshape(field, [L, n * k])[:, :P], offset)
    at += n
  return tf.cast(levels, tf.int32)


def _as_int32(x):
  return x if x.dtype == tf.int32 else tf.bitcast(tf.cast(x, tf.float32), tf.int32)


def to_wire(compressor, payload):
  """The payload as one int32 block [L, W], a row per agent, that any transport moves as it
  moves phi: b-bit levels packed into words, float32 scales and values bit-cast beside them."""
  if isinstance(compressor, Quantize):
    P = payload["P"]
    levels = tf.reshape(payload["levels"], [payload["levels"].shape[0], -1])[:, :P]
    if compressor.scale_bits == 32:
      scales = [payload["scale"]]
    else:
      scales = [payload["scale_top"][:, None], pack_bits(payload["scale_code"], 8)]
    parts = [*scales, pack_bits(levels, compressor.bits)]
  elif isinstance(payload, dict):
    parts = [payload[key] for key in ("index", "value") if key in payload]
  else:
    parts = [payload]
  return tf.concat([_as_int32(part) for part in parts], axis=1)


def from_wire(compressor, wire, P):
  """Inverse of to_wire for the gathered rows (every agent in reach): the payload."""
  as_float = lambda x: tf.bitcast(x, tf.float32)
  if isinstance(compressor, Quantize):
    B = compressor.block or P
    nb, at = -(-P // B), compressor.scale_words(P)
    if compressor.scale_bits == 32:
      scales = {"scale": as_float(wire[:, :nb])}
    else:
      scales = {"scale_top": as_float(wire[:, 0]),
                "scale_code": tf.cast(unpack_bits(wire[:, 1:at], 8, nb), tf.uint8)}
    levels = unpack_bits(wire[:, at:], compressor.bits, P)
    levels = tf.reshape(tf.pad(levels, [[0, 0], [0, nb * B - P]]), [-1, nb, B])
    dtype = tf.uint8 if compressor.bits <= 8 else tf.uint16
    return {"levels": tf.cast(levels, dtype), **scales, "P": P}
  if isinstance(compressor, RandK):
    return {"value": as_float(wire), "P": P}
  if isinstance(compressor, TopK):
    k = compressor.keep(P)
    return {"index": wire[:, :k], "value": as_float(wire[:, k:]), "P": P}
  return as_float(wire)


def make_compressor(kind, bits=8, fraction=0.1, block=256, scale_bits=32, dither="stochastic"):
  if kind == "identity":
    return Identity()
  if kind == "quantize":
    return Quantize(bits, block, scale_bits, dither)
  if kind == "topk":
    return TopK(fraction)
  if kind == "randk":
    return RandK(fraction)
  raise ValueError(f"no compressor {kind!r}; choose one of {KINDS[1:]} (none builds none).")


class ACTC:
  """Adapt-compress-then-combine state of this process: each worker's copy of q for the agents
  in its reach, and each own agent's round counter (its quantizer's stream: seeds.quantizer(seed,
  k) and the round).

  q starts at zero: agent l's initial weights are known to agent l alone, so a receiver's honest
  estimate of them before any message is 0 (as in ACTC and CHOCO-SGD); a q started at the
  initial weights would need one full-precision send first. With gamma = 1 the first combines
  therefore pull w towards the compressed increments only; zeta, gamma < 1 soften that start.

  Only trainable weights are compressed. BatchNorm moving statistics (``models.
  combined_variables`` lists them after the weights) are never quantized: a mean and a variance
  rebuilt from lossy increments from q = 0 could go near zero or negative, which the weights'
  estimate tolerates and a variance does not. ``statistics`` says what happens to them:

    float32  combined uncompressed, as in ATC (eq. 10b); their 4 bytes each are counted in the
             payload (the main job's G: 9,552 numbers, 10% of a 4-bit payload).
    local    not sent: each agent keeps its own running statistics. They are averages of G's
             activations on noise, so they depend on G's weights alone, never on private data,
             and agree across agents when the weights do; the averaged generators that
             metrics.json scores recompute theirs at read-out (models.recalibrate_batchnorm).
  """

  def __init__(self, compressor, zeta, gamma, seed, own, holders, sizes, owner, statistics,
               combine="actc"):
    """own: the agents this process adapts. holders: {worker: (device or None, reach)}: each
    worker of this process (one, or every in-process replica under mirrored) keeps q_l for the
    agents l in its reach (those whose rows its exchange returns, exchange.reach), on its own
    device, so no worker reads another's variables. sizes: {'d': P_D, 'g': P_G}, the flat size
    of each network's trainable weights. owner(l): the worker that adapts agent l."""
    self.compressor, self.zeta, self.gamma = compressor, float(zeta), float(gamma)
    self.choco = combine == "choco"
    self.send_statistics = statistics == "float32"
    self.own, self.owner = list(own), owner
    self.reach = {w: list(reach) for w, (_, reach) in holders.items()}
    self.stream = {l: seeds_lib.quantizer(seed, l) for r in self.reach.values() for l in r}
    self.q = {}
    for w, (device, reach) in holders.items():
      tag = "" if len(holders) == 1 else f"_worker_{w}"
      with tf.device(device) if device else contextlib.nullcontext():
        self.q[w] = {net: {l: tf.Variable(tf.zeros([P]), trainable=False, name=f"q_{net}_{l}{tag}")
                           for l in reach} for net, P in sizes.items()}
    self.rounds = {k: tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                  name=f"compression_round_{k}") for k in self.own}

  def trackables(self):
    """{agent_l: {...}}: an own agent's round counter and its owner's q (q_d, q_g); every other
    copy of q_l a worker keeps as q_d_worker_W, q_g_worker_W."""
    out = {}
    for w, nets in self.q.items():
      for net, q in nets.items():
        for l, variable in q.items():
          suffix = "" if self.owner(l) == w else f"_worker_{w}"
          out.setdefault(f"agent_{l}", {})[f"q_{net}{suffix}"] = variable
    for k, variable in self.rounds.items():
      out[f"agent_{k}"]["round"] = variable
    return out

  def row_bytes(self, P, bn_numbers):
    return self.compressor.row_bytes(P) + 4 * bn_numbers * self.send_statistics

  def step(self, net, psi, own, worker, send, combine, active=None):
    """One ACTC round of ``net`` for ``worker``'s agents ``own`` (global ids, rows of psi
    [L, P]): sends their compressed increments, rebuilds the increment of every agent in reach
    from the payloads and the shared seeds, updates the worker's copy of q and returns w [L, P].

    send(payload) -> the payloads of every agent in the worker's reach, in reach order (the
    exchange; the payload itself when every agent is in this replica). combine(q_reach) ->
    sum_l a_lk q_l [L, P]. active [K] 0/1, or None: an offline agent's increment is dropped by
    every receiver (its q stays) and it keeps w_k = psi_k."""
    reach, q = self.reach[worker], self.q[worker][net]
    q_reach = tf.stack([q[l].read_value() for l in reach])
    own_rows = [reach.index(k) for k in own]
    q_own = tf.gather(q_reach, own_rows)
    rounds = [self.rounds[k].assign_add(1) for k in own]
    seeds = lambda agents: tf.stack([tf.stack([tf.constant(self.stream[l], tf.int64), rounds[0]])
                                     for l in agents])  # every agent is at the same round
    increment = self.compressor.decompress(
        send(self.compressor.compress(psi - q_own, seeds(own))), seeds(reach))
    if active is not None:
      increment *= tf.gather(active, reach)[:, None]
    q_new = q_reach + self.zeta * increment
    with tf.control_dependencies([q[l].assign(q_new[i]) for i, l in enumerate(reach)]):
      mixed = combine(tf.identity(q_new))
    if self.choco:
      w = psi + self.gamma * (mixed - tf.gather(q_new, own_rows))
    else:
      w = (1.0 - self.gamma) * psi + self.gamma * mixed
    if active is not None:
      w = tf.where(tf.gather(active, own)[:, None] > 0, w, psi)
    return w


def make_actc(c, seed, own, holders, sizes, owner):
  """The ACTC state of the config section ``c`` (config.compression, or a dict of its fields),
  or None for kind = none (today's ATC)."""
  if c is None or c["kind"] == "none":
    return None
  return ACTC(make_compressor(c["kind"], c["bits"], c["fraction"], c["block"],
                              c["scale_bits"], c["dither"]), c["zeta"],
              c["gamma"], seed, own, holders, sizes, owner, c["statistics"], c["combine"])


def check_config(config):
  """compression.*: a known kind, bits in BITS, fraction in (0, 1], block >= 0, zeta and
  gamma in (0, 1], statistics in STATISTICS, and a mode that exchanges weights."""
  c = config.compression
  if c.kind not in KINDS:
    raise ConfigError(f"compression.kind={c.kind!r} is not one of {KINDS}; set "
                      "--config.compression.kind=...")
  if c.bits not in BITS or isinstance(c.bits, bool):
    raise ConfigError(f"compression.bits={c.bits!r} is not one of {BITS}.")
  if c.scale_bits not in SCALE_BITS or isinstance(c.scale_bits, bool):
    raise ConfigError(f"compression.scale_bits={c.scale_bits!r} is not one of {SCALE_BITS} "
                      "(32: a float32 scale per block; 8: a byte per block).")
  if c.dither not in DITHERS:
    raise ConfigError(f"compression.dither={c.dither!r} is not one of {DITHERS} (stochastic: "
                      "the receiver takes the level; subtractive: it also removes the dither).")
  if c.combine not in COMBINES:
    raise ConfigError(f"compression.combine={c.combine!r} is not one of {COMBINES} (actc: "
                      "w = (1 - gamma) psi + gamma A^T q; choco: w = psi + gamma (A^T q - q)).")
  if not isinstance(c.fraction, (int, float)) or not 0 < c.fraction <= 1:
    raise ConfigError(f"compression.fraction={c.fraction!r} must be in (0, 1].")
  if isinstance(c.block, bool) or not isinstance(c.block, int) or c.block < 0:
    raise ConfigError(f"compression.block={c.block!r} must be a non-negative integer "
                      "(0: one scale per agent and network).")
  for field in ("zeta", "gamma"):
    value = c[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
      raise ConfigError(f"compression.{field}={value!r} must be in (0, 1].")
  if c.statistics not in STATISTICS:
    raise ConfigError(f"compression.statistics={c.statistics!r} is not one of {STATISTICS}; "
                      "float32 combines the BatchNorm statistics, local keeps them unsent.")
  if c.kind == "none":
    return
  if config.train.mode not in ("diffusion", "gossip", "fusion"):
    raise ConfigError(f"compression.kind={c.kind} compresses what agents exchange, but "
                      f"train.mode={config.train.mode} exchanges nothing to compress; use "
                      "diffusion, gossip or fusion, or compression.kind=none.")
