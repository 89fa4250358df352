"""import_gguf: a GGUF file becomes a model folder that generates what the original model and
transformers' own GGUF loading do; a file it cannot use is refused in one line naming it, and
nothing is left in the models folder, whatever stopped the import."""

from __future__ import annotations

import json

import pytest
import torch
from gguf_files import not_gguf, truncate_gguf, write_gguf

from desktop_app.cli import main
from desktop_app.core.errors import describe
from desktop_app.core.events import Cancelled, Progress, StopToken
from desktop_app.ml.models import gguf_import
from desktop_app.ml.models.folder_check import inspect_model_folder
from desktop_app.ml.models.gguf_import import (
    GGUFImportError,
    ModelFolderExists,
    folder_name,
    free_folder_name,
    import_gguf,
    read_summary,
)
from desktop_app.ml.models.loader import load_model
from desktop_app.ml.models.tiny import END, build_tiny_model


@pytest.fixture(scope="module")
def tiny(chat_tokenizer):
    return build_tiny_model("llama", chat_tokenizer, hidden=32, heads=2)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, tiny, chat_tokenizer):
    return write_gguf(tiny, chat_tokenizer, tmp_path_factory.mktemp("gguf") / "tiny chat.gguf")


@pytest.fixture(scope="module")
def imported(tmp_path_factory, gguf_file):
    """One import, checked by several tests: (result, models folder, events)."""
    models = tmp_path_factory.mktemp("ws") / "models"
    events = []
    return import_gguf(gguf_file, models, emit=events.append), models, events


def _greedy(model, tokenizer, eos_ids, prompt="Hello there, how are you?"):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    with torch.no_grad():
        logits = model(**ids).logits
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, eos_token_id=eos_ids,
                             pad_token_id=eos_ids[0])
    return ids["input_ids"], logits, out


def test_the_folder_generates_what_the_original_and_transformers_gguf_do(imported, tiny,
                                                                          chat_tokenizer,
                                                                          gguf_file):
    result, models, _ = imported
    lm = load_model(result.path, device="cpu", dtype="float32")
    eos = [chat_tokenizer.eos_token_id, chat_tokenizer.convert_tokens_to_ids(END)]
    assert sorted(lm.eos_token_ids) == sorted(eos)   # the end-of-turn token kept as an EOS

    ids, logits, tokens = _greedy(lm.model, lm.tokenizer, eos)
    ids0, logits0, tokens0 = _greedy(tiny, chat_tokenizer, eos)
    assert torch.equal(ids, ids0)                     # same tokenizer and chat template
    assert torch.allclose(logits, logits0, atol=1e-5)
    assert torch.equal(tokens, tokens0)

    from transformers import AutoModelForCausalLM
    direct = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                  local_files_only=True, dtype=torch.float32)
    assert torch.equal(_greedy(direct.eval(), lm.tokenizer, eos)[2], tokens)


def test_the_folder_is_a_standard_model_folder(imported, tiny, chat_tokenizer):
    result, models, events = imported
    assert [p.name for p in models.iterdir()] == ["tiny-chat"]   # no temporary folder left
    assert result.path == str((models / "tiny-chat").resolve())
    assert result.architecture == "LlamaForCausalLM"
    assert result.parameters == sum(p.numel() for p in tiny.parameters())

    info = inspect_model_folder(result.path)
    assert info.has_chat_template and info.n_params == result.parameters
    assert info.weights_dtype == "float32"   # an F32 file keeps its own type
    assert (models / "tiny-chat" / "chat_template.jinja").read_text(encoding="utf-8") == \
        chat_tokenizer.chat_template
    config = json.loads((models / "tiny-chat" / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config

    stages = [e for e in events if isinstance(e, Progress)]
    assert [e.done for e in stages] == list(range(len(gguf_import.STAGES) + 1))


def test_grouped_query_attention_survives_the_key_permutation(tmp_path, chat_tokenizer):
    """Keys have fewer heads than queries (as in SmolLM2 or Llama 3): llama.cpp permutes them
    by their own head count."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(chat_tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        bos_token_id=chat_tokenizer.bos_token_id, eos_token_id=chat_tokenizer.eos_token_id,
        tie_word_embeddings=True)).eval()
    file = write_gguf(model, chat_tokenizer, tmp_path / "gqa.gguf")
    result = import_gguf(file, tmp_path / "models")
    lm = load_model(result.path, device="cpu", dtype="float32")
    eos = [chat_tokenizer.eos_token_id]
    _, logits, tokens = _greedy(lm.model, lm.tokenizer, eos)
    _, logits0, tokens0 = _greedy(model, chat_tokenizer, eos)
    assert torch.allclose(logits, logits0, atol=1e-5) and torch.equal(tokens, tokens0)


def test_the_header_is_read_without_transformers(gguf_file, tiny):
    summary = read_summary(gguf_file)
    assert summary.architecture == "llama" and summary.dtype == "float32"
    assert summary.parameters == sum(p.numel() for p in tiny.parameters())
    assert summary.chat_template and summary.end_token_ids == [0, 3]


# ---- refusals --------------------------------------------------------------------------------

def _empty(path):
    path.write_bytes(b"")
    return path


def _unsupported(tmp_path, tiny, tokenizer):
    return write_gguf(tiny, tokenizer, tmp_path / "odd.gguf", architecture="rlhfdesk-nope")


@pytest.mark.parametrize("make, reason", [
    (lambda tmp, src, *_: not_gguf(tmp / "notes.gguf"), "not a GGUF file"),
    (lambda tmp, src, *_: _empty(tmp / "empty.gguf"), "not a GGUF file"),
    (lambda tmp, src, *_: truncate_gguf(src, tmp / "half.gguf", keep=0.6), "cut short"),
    (lambda tmp, src, *_: truncate_gguf(src, tmp / "head.gguf", keep=0.001), "cut short"),
    (lambda tmp, src, model, tok: _unsupported(tmp, model, tok),
     "cannot read the 'rlhfdesk-nope' architecture"),
], ids=["not-gguf", "empty", "truncated", "truncated-header", "unsupported-architecture"])
def test_an_unusable_file_is_refused_in_one_line_leaving_nothing(tmp_path, gguf_file, tiny,
                                                                  chat_tokenizer, make, reason):
    (tmp_path / "src").mkdir()
    file = make(tmp_path / "src", gguf_file, tiny, chat_tokenizer)
    models = tmp_path / "models"
    with pytest.raises(GGUFImportError) as caught:
        import_gguf(file, models)
    sentence, is_bug = describe(caught.value)
    assert not is_bug and reason in sentence and str(file) in sentence
    assert "\n" not in str(caught.value)
    assert not models.exists() or not any(models.iterdir())


def test_an_existing_model_folder_is_never_replaced(tmp_path, gguf_file):
    models = tmp_path / "models"
    (models / "tiny-chat").mkdir(parents=True)
    (models / "tiny-chat" / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ModelFolderExists, match="tiny-chat already exists"):
        import_gguf(gguf_file, models)
    assert sorted(p.name for p in models.iterdir()) == ["tiny-chat"]
    assert [p.name for p in (models / "tiny-chat").iterdir()] == ["mine.txt"]
    assert free_folder_name(models, "tiny-chat") == "tiny-chat-2"
    assert import_gguf(gguf_file, models, name="tiny-chat-2").path.endswith("tiny-chat-2")


@pytest.mark.parametrize("after", [2, 5, 6])  # before the config, before saving, saved
def test_cancel_leaves_nothing_behind(tmp_path, gguf_file, after):
    stop = StopToken()

    def emit(event):
        if isinstance(event, Progress) and event.done == after - 1:
            stop.stop()

    models = tmp_path / "models"
    with pytest.raises(Cancelled):
        import_gguf(gguf_file, models, emit=emit, stop=stop)
    assert not models.exists() or not any(models.iterdir())


def test_too_little_disk_space_is_refused_first(tmp_path, gguf_file, monkeypatch):
    monkeypatch.setattr(gguf_import, "free_bytes", lambda path: 10 * 2**20)
    with pytest.raises(GGUFImportError, match="needs about .* only 10.0 MB free"):
        import_gguf(gguf_file, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_folder_names_are_safe():
    assert folder_name("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"
    assert folder_name("/x/My model (v2).gguf") == "My-model-v2"
    assert folder_name("/x/a.gguf", name="../../etc") == "etc"
    assert folder_name("/x/.gguf") == "model"


# ---- command line ----------------------------------------------------------------------------

def test_cli_import_model_json(capsys, tmp_path, gguf_file):
    ws = str(tmp_path / "ws")
    code = main(["--workspace", ws, "import-model", str(gguf_file), "--name", "chat", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == {"path", "architecture", "parameters"}
    assert result["path"] == str((tmp_path / "ws" / "models" / "chat").resolve())
    assert result["architecture"] == "LlamaForCausalLM" and result["parameters"] > 0

    # The same name again: refused in one line that names the folder, exit status 1.
    code = main(["--workspace", ws, "import-model", str(gguf_file), "--name", "chat", "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    last = err.strip().splitlines()[-1]   # after the progress line: one line, no traceback
    assert last.startswith("rlhf-desk: error: ") and "chat already exists" in last
    assert "Traceback" not in err
