"""Defaults shared by every config: the fields a run can override from the command line.

Each config file starts from ``get_config()`` here (``from tfdiffgan.configs import default``) and
changes what differs, so a field exists in every config and ``--config.train.iterations=100`` works
everywhere. ``tfdiffgan-train --help`` lists these lines.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_agents = 5

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"            # mnist | fashion_mnist
  config.data.source_dir = ""           # a folder of IDX files; '' = cache, offline mirrors, tfds
  config.data.partition = "iid"         # iid | classes | dirichlet
  config.data.classes = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]  # for partition=classes
  config.data.dirichlet_alpha = 0.5     # for partition=dirichlet
  config.data.batch_size = 64           # per agent and round; centralized uses K x this

  config.topology = ml_collections.ConfigDict()
  config.topology.graph = "paper5"      # paper5 | ring | grid | complete | star | erdos_renyi | small_world | file
  config.topology.rule = "metropolis"   # metropolis | uniform | file
  config.topology.edge_list = ""        # for graph=file: 'l k' per line
  config.topology.matrix_file = ""      # for rule=file: K rows of K numbers, a_lk in row l
  config.topology.p = 0.5               # erdos_renyi edge probability
  config.topology.k = 2                 # small_world neighbours
  config.topology.fusion_period = 5     # mode=fusion: iterations between averages of D and G (FedGAN)
  # Faults, drawn each round from (seed, round): every link fails with probability link_failure
  # (diffusion, gossip), every agent is offline with probability agent_dropout (no send, receive
  # or adapt). failure_rule: metropolis (weights recomputed on the surviving links) | self (a
  # failed link's weight moves to both endpoints' self-weights; symmetric A only).
  config.topology.link_failure = 0.0
  config.topology.agent_dropout = 0.0
  config.topology.failure_rule = "metropolis"

  config.model = ml_collections.ConfigDict()
  config.model.width = 0.25             # DCGAN width multiplier (1.0 = the TF DCGAN tutorial)
  # The discriminator's own width multiplier (0 = model.width). At width 0.25 D has 16 and 32
  # filters and 4% of G's parameters, so a D wider than G can still be cheap
  # (docs/RESULTS.md, round three).
  config.model.d_width = 0.0
  # Give D one more feature: how varied its batch is (models.MinibatchStddev, ProGAN's minibatch
  # standard deviation). False = the DCGAN discriminator of the paper.
  config.model.minibatch_std = False
  # D scores this many images at once, stacked as channels (models.Pack, PacGAN): it sees
  # whether a group of samples is as varied as a group of real ones. 1 = the DCGAN D of the paper.
  # A packed D can win the game too easily (docs/RESULTS.md, round four).
  config.model.pack = 1
  config.model.latent_dim = 100

  config.train = ml_collections.ConfigDict()
  config.train.mode = "diffusion"       # diffusion | noncooperative | centralized | fusion | gossip
  config.train.iterations = 700
  config.train.n_d = 5                  # discriminator rounds per iteration (Algorithm 1)
  config.train.n_g = 1                  # generator rounds per iteration
  config.train.optimizer = "sgd"        # sgd (the paper: phi = w - mu grad) | adam
  config.train.learning_rate = 0.05     # mu
  config.train.beta1 = 0.5              # adam only
  # mu_i falls linearly from mu to (1 - lr_decay) mu over train.iterations (0: constant, the
  # paper's). Theorem 1: the agents' disagreement scales with mu^2, so a smaller late mu brings
  # each agent closer to the network's centroid (all classes) after a fast start.
  config.train.lr_decay = 0.0
  # Clip each agent's gradient to this global norm (0 = off, the paper's plain SGD). Plain SGD at
  # mu = 0.05 can diverge for some seeds (D's weights blow up, then NaN); a norm of 5 keeps
  # them stable without slowing the early rounds (docs/RESULTS.md, Settings).
  config.train.clip_norm = 5.0
  # Generator averaging: each agent also keeps an exponential moving average of its own w_k^G,
  # updated after every iteration, never sent; samples, exports and evaluation use it, with the
  # BatchNorm statistics recomputed for the averaged weights at read-out (metrics.json scores the
  # iterate too). 0 = off: the paper's read-out.
  config.train.ema_decay = 0.0
  config.train.init_from = ""           # warm start: a workdir (its latest checkpoint) or a checkpoint
  #                                       prefix with the same K and widths; weights only, fresh runs only
  config.train.loss = "nonsaturating"   # minimax (eq. 3) | nonsaturating
  config.train.strategy = "default"     # default (one process, all agents) | mirrored | multiworker
  config.train.replicas = 1             # mirrored: R replicas (GPUs, else logical CPUs), K/R agents each
  config.train.exchange = "auto"        # the combine's transport: auto | local | allgather | neighbors
  #                                       (auto: local with one worker, else allgather)
  # multiworker: seconds a collective may wait for its peers (0 = no limit). A dead worker is
  # found anyway, by the strategy's health check; a limit keeps one TensorFlow thread per
  # collective alive until it expires, so a long limit exhausts threads (docs/PERFORMANCE.md).
  config.train.collective_timeout = 0.0
  config.train.log_every = 50
  config.train.checkpoint_every = 250
  config.train.sample_every = 250
  config.train.keep_checkpoints = 2

  # Compressed diffusion (ACTC, tfdiffgan/compression.py): each agent sends C(psi_k - q_k) and
  # keeps q_k <- q_k + zeta C(psi_k - q_k); w_k = (1 - gamma) psi_k + gamma sum_l a_lk q_l.
  # kind: none (today's ATC, bit for bit) | quantize | topk | randk | identity (lossless, tests).
  # Between replicas and workers the payload crosses packed (compression.to_wire).
  config.compression = ml_collections.ConfigDict()
  config.compression.kind = "none"
  config.compression.bits = 8           # quantize: 1..8 or 16 bits per weight
  config.compression.block = 256        # quantize: weights per scale (0: one scale per network)
  config.compression.scale_bits = 32    # quantize: each block's scale as float32 | 8: a byte
  config.compression.dither = "stochastic"  # quantize: stochastic rounding | subtractive: the
  #                                           receivers remove the shared dither (half the noise)
  config.compression.fraction = 0.1     # topk, randk: fraction of weights sent
  config.compression.zeta = 1.0         # compression step: q <- q + zeta C(psi - q)
  config.compression.gamma = 1.0        # combine step: w = (1 - gamma) psi + gamma A^T q
  config.compression.combine = "actc"   # | choco: w = psi + gamma (A^T q - q), exact average
  config.compression.statistics = "float32"  # BatchNorm moving statistics: combined as float32
  #                                            (eq. 10b) | local: each agent keeps its own, unsent

  config.eval = ml_collections.ConfigDict()
  config.eval.eval_every = 250          # iterations between FID/KID/coverage passes (0 = never)
  config.eval.periodic_samples = 2000   # samples per agent in those passes
  config.eval.final_samples = 10000     # samples per agent scored at the end (0 = skip)
  return config
