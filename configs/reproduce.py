"""The grid of bin/reproduce (its default --config): the paper's Figs. 3-6 at CPU scale, two
baselines, Theorem 1. The fields live in the package, ``tfdiffgan/configs/reproduce.py``.

  bin/reproduce --results_dir=results          # the full grid
  bin/reproduce --results_dir=/tmp/r --quick   # minutes

To change the grid, copy this file and edit the returned ConfigDict, e.g. ``c.seeds = [0, 1, 2]``,
then pass ``--config=my_grid.py`` (or override one field: ``--config.seeds=[0,1,2]``).
"""

from tfdiffgan.configs.reproduce import get_config  # pylint: disable=unused-import
