"""tfdiffgan: fully decentralized GAN training by diffusion learning (TensorFlow / Keras 3)."""

import os
import re

from setuptools import find_packages, setup

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfdiffgan", "__init__.py")) as f:
  VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)  # single-sourced

setup(
    name="tfdiffgan",
    version=VERSION,
    description="Decentralized GAN training through diffusion learning (Wang, Pavan, Sayed).",
    packages=find_packages(include=["tfdiffgan", "tfdiffgan.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tensorflow-datasets 4.9.10 on Python 3.11 needs it declared
        "tensorboard",
        "numpy",
        "scipy",
        "networkx",
        "absl-py",
        "ml_collections",
    ],
    # tensorflow-gan 2.1.0 does not import on TensorFlow >= 2.16 (tensorflow/gan#55); its
    # Frechet-distance formula is re-implemented in tfdiffgan.metrics and tested against.
    extras_require={"test": ["pytest", "matplotlib"], "plots": ["matplotlib"]},
    # Prefixed so they cannot collide with other packages' commands; bin/* call the same mains.
    entry_points={"console_scripts": [
        "tfdiffgan-train = tfdiffgan.main.train:main",
        "tfdiffgan-evaluate = tfdiffgan.main.evaluate:main",
        "tfdiffgan-generate = tfdiffgan.main.generate:main",
        "tfdiffgan-reproduce = tfdiffgan.main.reproduce:main",
        "tfdiffgan-launch = tfdiffgan.launch:main",
    ]},
)
