"""Sampling settings follow the model: its generation_config.json, and a response length that
suits a chat model (128 tokens cut off most of a real instruct model's answers)."""

import json

from desktop_app.core.config import SamplingConfig
from desktop_app.ml.generation.sampling_defaults import (
    CHAT_NEW_TOKENS,
    PLAIN_NEW_TOKENS,
    context_length,
    sampling_for_model,
)


def test_a_chat_model_gets_room_to_answer_and_a_plain_one_a_short_window(tmp_path):
    chat, taken = sampling_for_model(tmp_path, True, 8192, SamplingConfig())
    assert chat.max_new_tokens == CHAT_NEW_TOKENS and taken == []
    plain, _ = sampling_for_model(tmp_path, False, 8192, SamplingConfig())
    assert plain.max_new_tokens == PLAIN_NEW_TOKENS


def test_the_response_leaves_room_for_the_prompt(tmp_path):
    cfg, _ = sampling_for_model(tmp_path, True, 512, SamplingConfig())
    assert cfg.max_new_tokens == 256


def test_the_models_own_values_are_taken_and_kept_in_range(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({
        "temperature": 0.6, "top_p": 0.9, "top_k": 20, "max_new_tokens": 99999,
        "repetition_penalty": 1.05, "do_sample": True, "bos_token_id": 1}))
    cfg, taken = sampling_for_model(tmp_path, True, None, SamplingConfig(batch_size=3))
    assert taken == ["max_new_tokens", "repetition_penalty", "temperature", "top_k", "top_p"]
    assert (cfg.temperature, cfg.top_p, cfg.top_k) == (0.6, 0.9, 20)
    assert cfg.max_new_tokens == 4096          # the form's maximum
    assert cfg.batch_size == 3                 # not the model's business
    cfg.validate()


def test_a_damaged_generation_config_is_ignored(tmp_path):
    (tmp_path / "generation_config.json").write_text("{not json")
    cfg, taken = sampling_for_model(tmp_path, True, None, SamplingConfig())
    assert taken == [] and cfg.max_new_tokens == CHAT_NEW_TOKENS
    (tmp_path / "generation_config.json").write_text('{"temperature": "hot", "top_p": true}')
    cfg, taken = sampling_for_model(tmp_path, True, None, SamplingConfig())
    assert taken == [] and cfg.temperature == SamplingConfig().temperature


def test_context_length_reads_the_config():
    class Config:
        max_position_embeddings = 2048

    class Model:
        config = Config()

    assert context_length(Model()) == 2048
    assert context_length(object()) is None
