"""The grid on the tuned recipe (bin/reproduce --config=configs/reproduce_tuned.py): the main
job's model, optimizer and schedule. The fields live in the package,
``tfdiffgan/configs/reproduce_tuned.py``.

  bin/reproduce --config=configs/reproduce_tuned.py --results_dir=results_tuned \
      --summaries_dir=docs/results
  bin/reproduce --config=configs/reproduce_tuned.py --results_dir=/tmp/r \
      --summaries_dir=docs/results --report_only   # tables and figures from the summaries
"""

from tfdiffgan.configs.reproduce_tuned import get_config  # pylint: disable=unused-import
