"""Preference rows in the forms the field publishes them, each read into one ``PairRecord``.

| form                    | ``prompt``                     | ``chosen`` / ``rejected``            |
|-------------------------|--------------------------------|--------------------------------------|
| TRL standard            | text                           | text                                 |
| TRL conversational      | messages ending in a user turn | assistant turns                      |
| TRL implicit prompt     | (none)                         | the conversation, then               |
|                         |                                | the assistant answer                 |
| UltraFeedback binarized | text: the last user turn       | the conversation, then               |
|                         |                                | the assistant answer                 |
| Anthropic HH-RLHF       | (none)                         | transcripts                          |
|                         |                                | ``\\n\\nHuman: …\\n\\nAssistant: …`` |

Where the responses repeat the conversation, the turns up to the last user turn are the prompt
and must be the same in both; what follows is the answer. Other columns (``prompt_id``,
``messages``, ``source`` …) are ignored. Optional columns: ``score_chosen``/``score_rejected``
(UltraFeedback's ratings: checked, not stored; a row whose chosen score is below its rejected
score contradicts itself and is reported rather than guessed at) and ``tie`` (true/false, as
``exports`` writes it: the two responses were judged equally good).

The module also writes HH transcripts, so that reading and writing them share one definition.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from desktop_app.core.data.row_fields import (
    BadRow,
    conversation_text,
    kind_of,
    messages_field,
    text_field,
)

__all__ = ["ASSISTANT", "HUMAN", "PairRecord", "hh_transcript", "pair_from_row"]

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_SHAPE = r'"\n\nHuman: …\n\nAssistant: …"'.replace("\n", "\\n")


@dataclass
class PairRecord:
    """A judged pair: ``chosen`` was preferred over ``rejected`` as answers to ``prompt``
    (or, with ``tie``, the two were judged equally good)."""

    prompt: str
    prompt_messages: list[dict] | None
    chosen: str
    rejected: str
    line: int
    tie: bool = False
    score_chosen: float | None = None
    score_rejected: float | None = None


def pair_from_row(row: dict, line: int) -> PairRecord:
    """Read one preference row of any form above; raises ``BadRow`` saying what is wrong."""
    missing = [name for name in ("chosen", "rejected") if name not in row]
    if missing:
        raise BadRow("missing " + " and ".join(f"'{name}'" for name in missing))
    if "prompt" not in row and isinstance(row["chosen"], str) and isinstance(row["rejected"], str):
        prompt_messages, chosen, rejected = _hh_pair(row["chosen"], row["rejected"])
        prompt = conversation_text(prompt_messages, "chosen")
    else:
        chosen_turns, chosen = _response(row, "chosen")
        rejected_turns, rejected = _response(row, "rejected")
        prompt, prompt_messages = _prompt(row, chosen_turns, rejected_turns)
    if chosen == rejected:
        raise BadRow("'chosen' and 'rejected' are the same text")
    score_chosen, score_rejected = _scores(row)
    return PairRecord(prompt, prompt_messages, chosen, rejected, line, _tie(row),
                      score_chosen, score_rejected)


# ---------------------------------------------------------------------------------------
# TRL, implicit-prompt and UltraFeedback rows
# ---------------------------------------------------------------------------------------

def _response(row: dict, name: str) -> tuple[list[dict] | None, str]:
    """A response and the conversation it repeats, if any: a string is just the answer; a
    message list is the answer's assistant turns, optionally after the conversation."""
    if not isinstance(row[name], list):
        return None, text_field(row, name)
    messages = messages_field(row[name], name)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    conversation, answer = messages[:last_user + 1], messages[last_user + 1:]
    if not answer:
        raise BadRow(f"'{name}' ends with a user turn; it must end with the answer (only "
                     "assistant turns after the last user turn)")
    for message in answer:
        if message["role"] != "assistant":
            raise BadRow(f"'{name}' must hold only assistant turns after the conversation, "
                         f"found a '{message['role']}' turn")
    text = "\n\n".join(m["content"] for m in answer if m["content"])
    if not text:
        raise BadRow(f"'{name}' is empty")
    return conversation or None, text


def _prompt(row: dict, chosen_turns: list[dict] | None,
            rejected_turns: list[dict] | None) -> tuple[str, list[dict] | None]:
    """The prompt as text and messages, from the ``prompt`` field, the conversation the
    responses repeat, or both (which must then agree)."""
    if chosen_turns and rejected_turns and chosen_turns != rejected_turns:
        raise BadRow("'chosen' and 'rejected' continue different conversations; a pair must "
                     "answer the same prompt")
    conversation = chosen_turns or rejected_turns
    source = "chosen" if chosen_turns else "rejected"
    if "prompt" not in row:
        if conversation is None:
            raise BadRow("missing 'prompt'")
        return conversation_text(conversation, source), conversation
    if isinstance(row["prompt"], list):
        messages = messages_field(row["prompt"], "prompt")
        if messages[-1]["role"] != "user":
            raise BadRow("the 'prompt' conversation must end with a user turn")
        if conversation is not None and conversation != messages:
            raise BadRow(f"the conversation in '{source}' differs from 'prompt'")
        return conversation_text(messages, "prompt"), messages
    text = text_field(row, "prompt")
    if conversation is None:
        return text, None
    # UltraFeedback: 'prompt' is the question, and the responses repeat it as their last user
    # turn. A mismatch means the columns were shuffled, so the row is not trusted.
    if conversation[-1]["content"] != text:
        raise BadRow(f"the last user turn in '{source}' differs from 'prompt'")
    return conversation_text(conversation, source), conversation


def _scores(row: dict) -> tuple[float | None, float | None]:
    chosen, rejected = _number(row, "score_chosen"), _number(row, "score_rejected")
    if chosen is not None and rejected is not None and chosen < rejected:
        raise BadRow(f"'score_chosen' ({chosen:g}) is below 'score_rejected' ({rejected:g}), so "
                     "the row contradicts itself; fix the scores or swap the responses")
    return chosen, rejected


def _number(row: dict, name: str) -> float | None:
    """An optional number; CSV gives it as text, and an empty cell or null means absent."""
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise BadRow(f"'{name}' must be a number, found '{value.strip()}'") from None
    else:
        raise BadRow(f"'{name}' must be a number, found {kind_of(value)}")
    return None if math.isnan(number) else number


def _tie(row: dict) -> bool:
    """``tie`` as JSON true/false, or as CSV text (true/false, 1/0, yes/no, empty)."""
    value = row.get("tie")
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("", "false", "0", "no"):
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    raise BadRow(f"'tie' must be true or false, found {value!r}")


# ---------------------------------------------------------------------------------------
# Anthropic HH-RLHF transcripts
# ---------------------------------------------------------------------------------------

def _hh_pair(chosen: str, rejected: str) -> tuple[list[dict], str, str]:
    """Split two HH transcripts into the prompt they share and the two answers.

    The prompt is the common prefix up to and including the last "\\n\\nAssistant:" both
    share; each remainder is that transcript's answer."""
    chosen, rejected = _transcript(chosen, "chosen"), _transcript(rejected, "rejected")
    cut = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT)
    if cut < 0:
        raise BadRow("'chosen' and 'rejected' share no Human turn followed by an Assistant "
                     "turn, so there is no prompt they both answer")
    cut += len(ASSISTANT)
    answers = []
    for name, transcript in (("chosen", chosen), ("rejected", rejected)):
        answer = transcript[cut:]
        if HUMAN in answer or ASSISTANT in answer:
            # They differ in an earlier turn: the answers would be whole conversations.
            raise BadRow("'chosen' and 'rejected' part ways before their last Assistant turn, "
                         "so there is no single prompt they both answer")
        if not answer.strip():
            raise BadRow(f"'{name}' has an empty last Assistant turn")
        answers.append(answer.strip())
    return _hh_messages(chosen[:cut]), answers[0], answers[1]


def _transcript(text: str, name: str) -> str:
    """``text`` with its first turn marker in the canonical "\\n\\nHuman:" form; some copies
    of the data set drop the leading blank line."""
    text = "\n\n" + text.lstrip()
    if not text.startswith(HUMAN) or ASSISTANT not in text:
        raise BadRow(f"missing 'prompt'; without one, '{name}' must be an HH transcript "
                     f"({_HH_SHAPE})")
    return text


def _hh_messages(prompt: str) -> list[dict]:
    """The turns of a transcript that ends with the answer's "\\n\\nAssistant:" cue."""
    parts = _TURN.split(prompt)  # ["", speaker, text, speaker, text, …]
    messages = [{"role": "user" if speaker == "Human" else "assistant", "content": text.strip()}
                for speaker, text in zip(parts[1::2], parts[2::2])]
    messages.pop()  # the empty Assistant turn the answers fill in
    if not messages or messages[-1]["role"] != "user":
        raise BadRow("the transcripts must have a Human turn before their last Assistant turn")
    return messages


def hh_transcript(prompt: str, messages: list[dict] | None, answer: str) -> str:
    """The HH transcript of ``answer`` to a prompt: its turns, then "\\n\\nAssistant: answer".

    HH has no system turn, so system messages are left out."""
    turns = ([m for m in messages if m["role"] != "system"] if messages
             else [{"role": "user", "content": prompt}])
    text = "".join(f"{HUMAN if m['role'] == 'user' else ASSISTANT} {m['content']}" for m in turns)
    return f"{text}{ASSISTANT} {answer}"
