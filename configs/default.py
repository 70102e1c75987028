"""Defaults shared by every config: they live in the package, ``tfdiffgan/configs/default.py``.

A config file starts from them with ``from tfdiffgan.configs import default`` (as every file here
does), so it works from any directory and with an installed tfdiffgan; the fields and their
defaults are listed by ``tfdiffgan-train --help``.
"""

from tfdiffgan.configs.default import get_config  # pylint: disable=unused-import
