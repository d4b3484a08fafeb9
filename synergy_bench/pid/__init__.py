"""Partial information decomposition: exact BROJA on discrete tables, estimators from samples,
and information helpers."""

from .broja import PID, broja, broja_optimum, check_table
from .estimate import Estimate, estimate
from .info import entropy, mutual_information, source_target_informations

__all__ = ["PID", "Estimate", "broja", "broja_optimum", "check_table", "entropy", "estimate",
           "mutual_information", "source_target_informations"]
