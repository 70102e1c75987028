"""tfdiffgan: decentralized GAN training by diffusion learning (adapt-then-combine, Algorithm 1)."""

import os

from tfdiffgan import tflogs

__version__ = "0.1.0"  # setup.py reads it from here

# TensorFlow turns its oneDNN kernels on by default only on CPUs it recognizes (recent Intel); on
# others, such as the AMD EPYC of our CI, convolutions fall back to Eigen and the step runs
# 1.3-1.4x slower at width 0.25, 1.65-1.84x at full width (docs/PERFORMANCE.md). TensorFlow reads
# this once, on import, so it takes effect only if tfdiffgan is imported first (bin/ does); a
# user's TF_ENABLE_ONEDNN_OPTS=0 still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# TensorFlow's C++ start-up and grappler lines stay hidden unless TFDIFFGAN_TF_LOGS=1 (or a binary's
# --verbosity) asks for them; see tflogs.py for why an environment variable alone cannot.
tflogs.install()
