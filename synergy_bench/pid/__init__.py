"""Partial information decomposition: exact BROJA on discrete tables, and information helpers."""

from .broja import PID, broja, broja_optimum, check_table
from .info import entropy, mutual_information, source_target_informations

__all__ = ["PID", "broja", "broja_optimum", "check_table", "entropy", "mutual_information",
           "source_target_informations"]
