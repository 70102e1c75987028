"""The paper's experiments as a resumable grid of ordinary training runs, then figures and JSON.

Downstream of everything else, one module per job:

  grid      what to run: the cells of a grid config (name, group, training config)
  run       train the cells not done yet, skip the finished ones, collect each cell's record,
            write results.json (once, atomically), results.md and the figures
  analysis  summaries per mode, Theorem 1 fits, the faults table, the paper's claims
  report    results.md and the figures (matplotlib PNGs in RESULTS_DIR)
"""

from tfdiffgan.reproduce.analysis import agent_coverage
from tfdiffgan.reproduce.analysis import claims
from tfdiffgan.reproduce.analysis import faults_claim
from tfdiffgan.reproduce.analysis import summarize
from tfdiffgan.reproduce.analysis import weakest_share
from tfdiffgan.reproduce.grid import APART
from tfdiffgan.reproduce.grid import apply_quick
from tfdiffgan.reproduce.grid import Cell
from tfdiffgan.reproduce.grid import cells
from tfdiffgan.reproduce.grid import classes_for
from tfdiffgan.reproduce.grid import THEOREM1_GROUPS
from tfdiffgan.reproduce.report import figures
from tfdiffgan.reproduce.report import markdown
from tfdiffgan.reproduce.run import collect
from tfdiffgan.reproduce.run import run_grid
