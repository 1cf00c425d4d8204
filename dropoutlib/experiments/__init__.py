"""The experiments behind Part III: Srivastava et al.'s figures reproduced at laptop scale.

Run one from the command line (a progress bar goes to stderr)::

    python -m dropoutlib.experiments p_effect --out dropoutlib/results/p_effect.json
    python -m dropoutlib.experiments data_size --out /tmp/d.json --quick --seeds 0 1

or from Python with :func:`run_experiment`, which returns a tidy
:class:`~dropoutlib.experiments.common.Results` table. The committed results files live in
``dropoutlib/results/`` and record the command, the versions and the seeds that produced them;
:func:`load_results` reads them and :func:`run_point` re-runs any single point.
"""

from dropoutlib.experiments import coadaptation as _coadaptation
from dropoutlib.experiments import uncertainty as _uncertainty
from dropoutlib.experiments.common import Progress, Results, load_results
from dropoutlib.experiments.sweeps import EXPERIMENTS, Experiment, run_experiment, run_point

EXPERIMENTS["coadaptation"] = Experiment(
    "coadaptation", "Chapter 1: single-unit ablation, plain vs dropout, matched validation loss",
    _coadaptation.settings, _coadaptation.point, {}, _coadaptation.DEFAULT_SEEDS,
    runner=_coadaptation.run,
)  # fmt: skip
EXPERIMENTS["uncertainty"] = Experiment(
    "uncertainty", "Chapter 15: MC dropout uncertainty (digits 0-4 vs 5-9; 1-D regression vs n)",
    _uncertainty.settings, _uncertainty.point, {}, _uncertainty.DEFAULT_SEEDS,
    runner=_uncertainty.run,
)  # fmt: skip

__all__ = ["EXPERIMENTS", "Progress", "Results", "load_results", "run_experiment", "run_point"]
