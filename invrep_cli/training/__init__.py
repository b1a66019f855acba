"""Making a model: the LIR model and its steps (``model``), the loop that decides when to log,
sample, validate, checkpoint and report (``loop``), the run folder, the noise set-up, the start
weights, the --time budget, the no-reference criterion and the resume check."""

from invrep_cli.training.loop import Trainer, TrainResult, train
from invrep_cli.training.model import LIRModel

__all__ = ["LIRModel", "TrainResult", "Trainer", "train"]
