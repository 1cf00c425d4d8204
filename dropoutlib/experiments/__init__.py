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
from dropoutlib.experiments import structured as _structured
from dropoutlib.experiments import transformers as _transformers
from dropoutlib.experiments import uncertainty as _uncertainty
from dropoutlib.experiments.common import Progress, Results, load_results
from dropoutlib.experiments.sweeps import EXPERIMENTS, Experiment, run_experiment, run_point

EXPERIMENTS["coadaptation"] = Experiment(
    "coadaptation", "Chapter 1: single-unit ablation, plain vs dropout, matched validation loss",
    _coadaptation.settings, _coadaptation.point, {}, _coadaptation.DEFAULT_SEEDS,
    runner=_coadaptation.run,
)  # fmt: skip
EXPERIMENTS["transformers"] = Experiment(
    "transformers", "Chapter 19: dropout, one pass over abundant data vs many epochs on little",
    _transformers.settings, _transformers.point, {}, _transformers.DEFAULT_SEEDS,
    runner=_transformers.run,
)  # fmt: skip
EXPERIMENTS["uncertainty"] = Experiment(
    "uncertainty", "Chapter 15: MC dropout uncertainty (digits 0-4 vs 5-9; 1-D regression vs n)",
    _uncertainty.settings, _uncertainty.point, {}, _uncertainty.DEFAULT_SEEDS,
    runner=_uncertainty.run,
)  # fmt: skip


def _recurrent_runner(name: str):  # chapter 18's sweeps import torch only when they run
    def run(seeds: list[int], quick: bool, progress: bool) -> Results:
        from dropoutlib.experiments import recurrent

        return recurrent.run(name, seeds, quick, progress)

    return run


for _name, _doc in {
    "recurrent_locked": "Chapter 18: per-step vs locked masks in a variational GRU (digits rows)",
    "recurrent_embedding": "Chapter 18: whole-word vs element dropout of embeddings (tokens)",
    "recurrent_schedules": "Chapter 18: dropout, R-Drop, early and late dropout (digits rows)",
    "recurrent_concrete": "Chapter 18: concrete dropout's learned p against the data-set size",
}.items():
    EXPERIMENTS[_name] = Experiment(
        _name, _doc, None, None, {}, [0, 1, 2, 3, 4], runner=_recurrent_runner(_name)
    )

EXPERIMENTS["structured"] = Experiment(
    "structured", "Chapter 17: DropConnect vs dropout, DropPath schedules, DropBlock vs Dropout2d",
    _structured.settings, _structured.point, {}, _structured.DEFAULT_SEEDS,
    runner=_structured.run,
)  # fmt: skip

__all__ = ["EXPERIMENTS", "Progress", "Results", "load_results", "run_experiment", "run_point"]
