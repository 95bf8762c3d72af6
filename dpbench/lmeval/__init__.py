"""dpbench inside lm-evaluation-harness: the ``dpbench`` model and dpbench's task definitions.

Importing this package registers the model. lm-eval's own ``lm_eval`` command
does not import dpbench, so use the wrapper, which does and also adds
``--include_path`` (the YAMLs shipped in ``dpbench/lmeval/yaml``)::

    python -m dpbench.lmeval --model dpbench \
        --model_args model=GSAI-ML/LLaDA-8B-Instruct,sampler=dparallel,threshold=0.5,batch_size=8 \
        --tasks dpbench_gsm8k
"""

from .model import DPBenchLM, apply_until
from .tasks import LMEVAL_TASKS, TASKS_DIR, LmevalRun, evaluate, lmeval_name, local_task_dir, task_manager

__all__ = [
    "DPBenchLM",
    "LMEVAL_TASKS",
    "LmevalRun",
    "TASKS_DIR",
    "apply_until",
    "evaluate",
    "lmeval_name",
    "local_task_dir",
    "task_manager",
]
