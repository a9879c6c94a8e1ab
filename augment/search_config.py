"""What a search is asked to do: `SearchConfig`, its checks and defaults (the command-line options'
defaults too: augment/commands.py reads them here), and which of its fields change the answer.

Kept apart from the search itself so that the command line and the deploy can build and key a
configuration without importing the search's machinery.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eenn.augment import int8_scoring as I8
from eenn.augment import thresholds as T
from eenn.augment.architectures import PLACEMENTS
from eenn.augment.exits import ExitConfig
from eenn.augment.features import AugmentConfig
from eenn.augment.training import TrainConfig
from eenn.errors import EennError
from eenn.paths import cache_dir as default_cache_dir

EFFICIENCIES = ("macs", "latency", "energy")
DEFAULT_MAX_DROP = 0.01  # the default objective: the largest saving within 1 accuracy point


@dataclass
class SearchConfig:
    hardware: str = "psoc6"
    clock_plan: str | None = None  # the profile's clock plan (None: its first; see hardware.py)
    measured: str | None = None
    latency_bound_s: float | None = None
    # auto: max_drop (the largest saving within max_accuracy_drop, default 1 point) unless only
    # `w` is given, then the paper's weighted objective
    objective: str = "auto"
    # what efficiency_gain measures: the cost model's mean energy (default; latency where the
    # profile has no power figures), its mean latency, or mean MACs (the paper's)
    efficiency: str = "energy"
    w: float | None = None  # None: 0.9 where the weighted objective is used
    max_accuracy_drop: float | None = None  # fraction (0.02 = 2 points); implies objective max_drop
    placement: str = "any"  # exits anywhere, stages on processors in order ("boundary": the paper's space)
    max_exits: int = 2
    confidence: str = "max"
    threshold_steps: int = 13
    threshold_method: str = "auto"  # auto | exact | graph
    calibration: str = "auto"  # auto | val | split | train
    correction: float = 1.0  # thresholds are multiplied by this (the paper: 1, 2/3, 1/2 when calibrating on train)
    seed: int = 0
    exits: ExitConfig = field(default_factory=ExitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: no disk cache
    feature_cache: bool = True  # False: train exits through the frozen backbone (the benchmark's baseline)
    memory_limit: int = 2 << 30  # bytes of cached feature maps kept in memory; beyond, numpy.memmap
    disk_limit: int | None = None  # bytes of memory-mapped maps allowed on disk; beyond, streaming (streaming.py)
    feature_store: str = "auto"  # auto | float | int8 | stream (streaming.choose_storage)
    ray: str | None = None  # train exits on Ray: an address or local:N (distributed.py)
    finetune: bool = False
    fine_steps: int = 101
    batch_size: int = 64  # inference batch of the feature pass
    scoring: str = "int8"  # what thresholds and architectures are chosen on: int8 (as the board runs) or float

    def checked(self) -> SearchConfig:
        if self.latency_bound_s is not None and not self.latency_bound_s > 0:
            raise EennError(f"latency bound {self.latency_bound_s}: expected a positive number of seconds")
        if self.objective == "auto":
            self.objective = "weighted" if self.w is not None and self.max_accuracy_drop is None else "max_drop"
            if self.objective == "max_drop" and self.max_accuracy_drop is None:
                self.max_accuracy_drop = DEFAULT_MAX_DROP
        if self.w is None:
            self.w = 0.9
        if self.placement not in PLACEMENTS:
            raise EennError(f"placement '{self.placement}': expected one of {', '.join(PLACEMENTS)}")
        if isinstance(self.max_exits, bool) or not isinstance(self.max_exits, int) or self.max_exits < 0:
            raise EennError(f"max exits {self.max_exits!r}: expected a non-negative integer")
        if self.max_accuracy_drop is not None:
            if not 0 <= self.max_accuracy_drop <= 1:
                raise EennError(f"max accuracy drop {self.max_accuracy_drop}: expected a fraction in [0, 1] "
                                "(0.02 = 2 points)")
            self.objective = "max_drop"
        if self.scoring not in I8.SCORINGS:
            raise EennError(f"scoring '{self.scoring}': expected one of {', '.join(I8.SCORINGS)}")
        if self.efficiency not in EFFICIENCIES:
            raise EennError(f"efficiency '{self.efficiency}': expected one of {', '.join(EFFICIENCIES)}")
        if self.objective not in ("weighted", "max_drop"):
            raise EennError(f"objective '{self.objective}': expected weighted or max_drop")
        if self.objective == "max_drop" and self.max_accuracy_drop is None:
            raise EennError("objective max_drop needs a maximum accuracy drop")
        if not 0 <= self.w <= 1:
            raise EennError(f"w = {self.w}: expected a weight between 0 and 1")
        if not 0 < self.correction <= 1.5:
            raise EennError(f"correction {self.correction}: expected a factor in (0, 1.5]")
        if self.confidence not in T.CONFIDENCES:
            raise EennError(f"confidence '{self.confidence}': expected max or margin")
        if self.threshold_method not in ("auto", "exact", "graph"):
            raise EennError(f"threshold method '{self.threshold_method}': expected auto, exact or graph")
        if not 0 < self.exits.budget_share < 1:
            raise EennError(f"exit budget {self.exits.budget_share}: expected a share of the backbone in (0, 1)")
        if self.feature_store not in ("auto", "float", "int8", "stream"):
            raise EennError(f"feature storage '{self.feature_store}': expected auto, float, int8 or stream")
        if self.ray is not None:
            import importlib.util

            from eenn.augment.distributed import parse_address

            parse_address(self.ray)
            if importlib.util.find_spec("ray") is None:
                raise EennError(f"--ray {self.ray}: Ray is not installed (pip install 'eenn[ray]')")
        if self.train.epochs < 1:
            raise EennError("exit training needs at least one epoch")
        if not 0 <= self.train.quant_aware <= 1:
            raise EennError(f"--qat {self.train.quant_aware}: expected a share of the training epochs in [0, 1]")
        return self

    def answer_key(self) -> dict[str, Any]:
        """The fields that decide what the search answers (nested configs as dicts): what a rerun
        must match to reuse a bundle. `RUN_FIELDS` (where and how fast it runs) are left out."""
        return {name: _plain(getattr(self, name)) for name in ANSWER_FIELDS}


# Every SearchConfig field is one or the other (tests/test_cli_options.py checks that none is
# left out). Storage fields are answers: int8 or streamed maps train other exits than float ones.
ANSWER_FIELDS = ("hardware", "clock_plan", "measured", "latency_bound_s", "objective", "efficiency", "w",
                 "max_accuracy_drop", "placement", "max_exits", "confidence", "threshold_steps", "threshold_method",
                 "calibration", "correction", "seed", "exits", "train", "augment", "feature_cache", "memory_limit",
                 "disk_limit", "feature_store", "finetune", "fine_steps", "scoring")
RUN_FIELDS = ("cache_dir", "ray", "batch_size")  # the exit cache's place, the workers, the inference batch


def _plain(v: Any) -> Any:
    return v.to_dict() if hasattr(v, "to_dict") else str(v) if isinstance(v, Path) else v
