"""tfdiffgan: fully decentralized GAN training by diffusion learning (TensorFlow / Keras 3)."""

from setuptools import find_packages, setup

setup(
    name="tfdiffgan",
    version="0.1.0",
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
    scripts=["bin/train", "bin/evaluate", "bin/generate", "bin/reproduce"],
)
