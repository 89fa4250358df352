"""Models are built one at a time: transformers builds under torch's process-wide default dtype,
so a bf16 load beside a float32 sizing on another thread made a layer in the wrong dtype."""

import threading

import torch

from desktop_app.ml.models import stack
from desktop_app.ml.models.loader import load_model
from desktop_app.ml.planning import shape


def test_a_load_and_a_sizing_on_two_threads_leave_every_weight_in_its_dtype(llama_chat_dir,
                                                                           monkeypatch):
    monkeypatch.setenv("RLHF_DESK_CPU_BF16", "1")  # the load is bf16, the sizing float32
    default = torch.get_default_dtype()
    errors: list[BaseException] = []

    def size_repeatedly():
        try:
            for i in range(30):
                shape._shape(str(llama_chat_dir), i, False)  # _stamp: bypass the cache
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=size_repeatedly)
    thread.start()
    models = [load_model(llama_chat_dir, device="cpu") for _ in range(5)]
    thread.join()
    assert not errors
    for lm in models:
        assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == default


def test_the_build_lock_is_reentrant():
    with stack.building_a_model(), stack.building_a_model():
        pass
