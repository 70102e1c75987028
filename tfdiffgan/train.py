"""``python -m tfdiffgan.train``: the same program as tfdiffgan-train (tfdiffgan/main/train.py)."""

from tfdiffgan.main.train import main

if __name__ == "__main__":
  main()
