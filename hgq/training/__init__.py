"""Training helpers: EBOPs readout, beta schedules, Pareto checkpoints, range calibration, progress.

Typical run::

    callbacks = [ResetRanges(), BetaScheduler(Log(1e-7, 1e-4, 200)), EBOPsLogger(),
                 ParetoCheckpoint('runs/a'), ProgressBar()]
    model.fit(x, y, validation_data=(xv, yv), epochs=200, verbose=0, callbacks=callbacks,
              initial_epoch=resume_epoch('runs/a'))
    calibrate(best_model, x)  # before export

Order matters: callbacks that write a log key (EBOPsLogger, BetaScheduler) go before those that
read it (ParetoCheckpoint, ProgressBar). Imports only hgq.layers and hgq.quantizers.
"""

from .calibration import ResetRanges, calibrate, reset_ranges
from .ebops import EBOPsLogger, exact_ebops, total_ebops
from .latest import LatestCheckpoint, latest_state
from .lut_cost import LUTCostCoefficients, LUTEstimate, LUTLogger, lut_estimate, use_cost
from .pareto import ParetoCheckpoint, ParetoFront, read_index, resume_epoch
from .progress import ProgressBar
from .schedules import BetaScheduler, Constant, Linear, Log, Piecewise, set_beta
from .targets import BudgetController, PowerLawLUTs, TrainingEBOPs, next_beta, rate_beta

__all__ = [
    'BetaScheduler', 'BudgetController', 'Constant', 'EBOPsLogger', 'LUTCostCoefficients', 'LUTEstimate',
    'LUTLogger', 'LatestCheckpoint', 'Linear', 'Log',
    'ParetoCheckpoint', 'ParetoFront', 'Piecewise', 'PowerLawLUTs', 'ProgressBar', 'ResetRanges',
    'TrainingEBOPs', 'calibrate', 'exact_ebops', 'latest_state', 'next_beta', 'rate_beta', 'read_index', 'reset_ranges',
    'lut_estimate', 'resume_epoch', 'set_beta', 'total_ebops', 'use_cost',
]
