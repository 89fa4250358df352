"""Import the ML stack (torch, transformers, peft) once, one thread at a time.

transformers replaces its module with a lazy one while ``import transformers`` runs, and that
lazy module is not safe to use from a second thread before the first import is over: a thread
that does ``from transformers import AutoConfig`` meanwhile can get ``ImportError: cannot
import name 'AutoConfig'``. At start-up the app imports the stack on a background thread while
the window paints, and the first model is inspected and loaded on another; so every entry point
that may run first (the warm-up, model inspection, model loading, any background job) calls
``import_stack()``, which imports everything the app uses under one lock. Afterwards the names
are plain attributes and any thread may import them.

This module itself imports nothing heavy, so the GUI can import it on its UI thread.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_ready = threading.Event()
_error: BaseException | None = None
seconds = 0.0  # how long the import took (shown in the log)


def import_stack() -> None:
    """Import torch, transformers and peft, and resolve the names the app uses. Blocks while
    another thread does it; returns at once afterwards. Raises what the import raised (on every
    call, so each caller reports it)."""
    global _error, seconds
    if not _ready.is_set():
        with _lock:
            if not _ready.is_set():
                started = time.perf_counter()
                try:
                    _import_everything()
                except BaseException as exc:  # noqa: BLE001 - kept and raised to every caller
                    _error = exc
                seconds = time.perf_counter() - started
                _ready.set()
    if _error is not None:
        raise _error


def is_ready() -> bool:
    return _ready.is_set() and _error is None


def _import_everything() -> None:
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from peft import (  # noqa: F401
        LoraConfig,
        PeftModel,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
    from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: F401
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GenerationConfig,
        LogitsProcessorList,
        PreTrainedTokenizerFast,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES  # noqa: F401
    from transformers.models.auto.modeling_auto import (  # noqa: F401
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )
    from transformers.pytorch_utils import Conv1D  # noqa: F401
    from transformers.utils import logging as hf_logging  # noqa: F401


# ---- building models -------------------------------------------------------------------------

# transformers builds a model under torch's *process-wide* default dtype, which from_pretrained
# and from_config set to the model's dtype and restore afterwards. Two builds on two threads
# (a bf16 model loading for generation while the memory plan sizes a float32 config on the meta
# device, say) interleave those sets and restores: a layer of one model was made in the other's
# dtype, and generation failed with "expected m1 and m2 to have the same dtype" (seen on a CPU
# where "auto" is bf16). Every build holds this lock.
_build_lock = threading.RLock()


def building_a_model():
    """A context manager: held around every from_pretrained / from_config of a model."""
    return _build_lock
