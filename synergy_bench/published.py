"""Published numbers that our results are compared with (used only by the ours-vs-published report).

Bimodal Trifeature, linear-probe accuracy in percent, 5 seeds: R = shape (shared by the two
images, chance 10 %), U = texture of one image (chance 10 %), S = the synergy task (balanced
accuracy, chance 50 %). A standard deviation of ``None`` means the paper gives none.

Each row names the ``setting`` of its published run: the values of our method parameters that
define the objective it trained (InfMasking's Trifeature settings tau 0.1, lambda 1, rho 0.7, T 6
with masks drawn from the anchor's own augmentation; CoMM's tau 0.1; FactorCL's concatenation
critics). Only runs with those values are compared with the row; sizes (widths, image size,
epochs) are budget, not setting, and are not matched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

INFMASKING_PAPER = "Wen, Dai et al. 2025 (InfMasking, NeurIPS), Trifeature table"
COMM_PAPER = "Dufumier, Castillo-Navarro et al. 2025 (CoMM, ICLR), Trifeature table"


@dataclass(frozen=True)
class PublishedRow:
    """One published row: the paper's method name, our registry name, the source, the scores and
    the setting of our parameters that corresponds to the published run."""

    name: str       # as printed in the paper
    method: str     # our registered method name
    source: str     # paper, year, table
    scores: dict    # task -> (mean %, std % or None)
    setting: dict = field(default_factory=dict)  # our parameter -> its value in the published run

    def matches(self, params: dict) -> bool:
        """Whether a run with method parameters ``params`` corresponds to this published run."""
        return all(k in params and params[k] == v for k, v in self.setting.items())


COMM_SETTING = {"temperature": 0.1}

TRIFEATURE: tuple[PublishedRow, ...] = (
    PublishedRow("Cross", "cross", INFMASKING_PAPER, {"R": (100.0, None), "U": (11.6, None), "S": (50.0, None)}),
    PublishedRow("Cross+Self", "cross_self", INFMASKING_PAPER,
                 {"R": (99.7, None), "U": (86.9, None), "S": (50.0, None)}),
    PublishedRow("FactorCL", "factorcl", INFMASKING_PAPER, {"R": (99.8, None), "U": (62.5, None), "S": (46.5, None)},
                 {"critic": "concat"}),
    PublishedRow("MAE", "mae", INFMASKING_PAPER, {"R": (99.8, 0.1), "U": (82.4, 3.1), "S": (50.1, 0.2)}),
    PublishedRow("CoMM", "comm", INFMASKING_PAPER, {"R": (99.9, 0.1), "U": (86.8, 3.0), "S": (71.4, 3.5)},
                 COMM_SETTING),
    PublishedRow("CoMM (own paper)", "comm", COMM_PAPER, {"U": (87.8, 1.6), "S": (71.9, 2.0)}, COMM_SETTING),
    PublishedRow("InfMasking", "infmasking", INFMASKING_PAPER,
                 {"R": (99.9, 0.1), "U": (90.6, 2.3), "S": (77.0, 4.2)},
                 {**COMM_SETTING, "mask_ratio": 0.7, "num_masks": 6, "mask_lambda": 1.0, "masked_from": "same"}),
)

# our task name -> the published column it is compared with
TRIFEATURE_TASKS = {"R": "R", "U1": "U", "S": "S"}

# published column -> the training protocol (generator param ``protocol``) of its experiment: R and
# U come from the R/U experiment (unbiased pairs), S from the S experiment (biased pairs)
TRIFEATURE_PROTOCOL = {"R": "ru", "U": "ru", "S": "s"}


def trifeature_table() -> dict[str, dict[str, tuple[float, float | None]]]:
    """The Trifeature table as ``{published name: {task: (mean %, std % or None)}}``."""
    return {row.name: dict(row.scores) for row in TRIFEATURE}
