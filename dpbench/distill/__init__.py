"""Certainty-forcing distillation (dParallel): trajectories -> train -> merge.

Contracts (DESIGN.md §3): `semi_ar_masks`, `certainty_forcing_loss`.

Names load on first use (`dpbench.lazy`): the training and merge modules import transformers
and peft, and a command that only checks its arguments should not wait for them.
"""

from ..lazy import lazy_package

_LAZY = {
    **dict.fromkeys(("LLADA_TARGETS", "DistillConfig", "LoraSettings", "TrainConfig", "TrajectoryConfig"), "config"),
    **dict.fromkeys(("CertaintyForcingTerms", "certainty_forcing_loss", "certainty_forcing_terms"), "loss"),
    "semi_ar_masks": "masking",
    "merge": "merge",
    **dict.fromkeys(("STAGES", "DistillPaths", "run_distill"), "pipeline"),
    **dict.fromkeys(("TrainResult", "build_examples", "check_lora_targets", "collate", "make_student", "train"), "train"),
    **dict.fromkeys(("TrajectoryStats", "generate_trajectories", "import_dataset", "load_trajectories",
                     "read_paper_dataset"), "trajectories"),
}

lazy_package(__name__, _LAZY)

__all__ = sorted(_LAZY)
