"""Certainty-forcing distillation (dParallel): trajectories -> train -> merge.

Contracts (DESIGN.md §3): `semi_ar_masks`, `certainty_forcing_loss`.
"""

from .config import LLADA_TARGETS, DistillConfig, LoraSettings, TrainConfig, TrajectoryConfig
from .loss import CertaintyForcingTerms, certainty_forcing_loss, certainty_forcing_terms
from .masking import semi_ar_masks
from .merge import merge
from .pipeline import STAGES, DistillPaths, run_distill
from .train import TrainResult, build_examples, check_lora_targets, collate, make_student, train
from .trajectories import TrajectoryStats, generate_trajectories, import_dataset, load_trajectories, read_paper_dataset

__all__ = [
    "LLADA_TARGETS",
    "STAGES",
    "CertaintyForcingTerms",
    "DistillConfig",
    "DistillPaths",
    "LoraSettings",
    "TrainConfig",
    "TrainResult",
    "TrajectoryConfig",
    "TrajectoryStats",
    "build_examples",
    "certainty_forcing_loss",
    "certainty_forcing_terms",
    "check_lora_targets",
    "collate",
    "generate_trajectories",
    "import_dataset",
    "load_trajectories",
    "make_student",
    "merge",
    "read_paper_dataset",
    "run_distill",
    "semi_ar_masks",
    "train",
]
