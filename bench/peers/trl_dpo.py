"""TRL 1.x DPOTrainer, one whole job, matched to ours (run in bench/.peer-venvs/trl).

bench/bench_dpo.py's TRL side, moved into the peer venv: the same model, data, split (train /
val jsonl in TRL's conversational preference format, from our run's split.json), batch size,
max length, LoRA settings and targets, learning rate and schedule, beta and sigmoid loss, and
our precision (base weights in job["dtype"], bf16/fp16 autocast as ours resolves it), no
gradient checkpointing, dropout off. precompute_ref_log_probs stays at TRL's default (False:
a reference forward pass every step), whereas ours computes the reference log-probabilities
once: that difference is part of what is measured. Evaluation in one batch: TRL's
eval_rewards/accuracies is a mean of per-batch means, the share of pairs ranked right only then.

Timed (wall_s): from after the imports to the saved adapter: loading, tokenising, training,
the final evaluation, saving; the span of ours' train_dpo call. After the timing the tokens TRL
trained on are written to out/tokens.jsonl, so bench/peers.py can check they are ours.
"""

from __future__ import annotations

import json

import _peer  # first: it sets the offline switches before the imports below
import torch
from datasets import Dataset, disable_progress_bars
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
from trl import DPOConfig, DPOTrainer


def main() -> None:
    job = _peer.load_job()
    c = job["cfg"]  # our DPOConfig's fields
    disable_progress_bars()
    start = _peer.clock()
    train = Dataset.from_list(_peer.read_jsonl(job["train"]))
    val = Dataset.from_list(_peer.read_jsonl(job["val"]))
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=getattr(torch, job["dtype"]))
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=c["lora_r"], lora_alpha=c["lora_alpha"],
                             lora_dropout=c["lora_dropout"], target_modules=job["lora_targets"])
    args = DPOConfig(
        output_dir=job["out"], per_device_train_batch_size=c["batch_size"],
        per_device_eval_batch_size=max(1, len(val)),
        gradient_accumulation_steps=c["grad_accum"], num_train_epochs=c["epochs"],
        learning_rate=c["lr"], lr_scheduler_type=c["scheduler"],
        warmup_steps=c["warmup_ratio"],  # transformers 5: a value below 1 is a ratio
        weight_decay=c["weight_decay"], max_grad_norm=c["max_grad_norm"],
        max_length=c["max_length"], beta=c["beta"], loss_type=["sigmoid"],
        logging_steps=c["log_every"], save_strategy="no", eval_strategy="no", report_to=[],
        use_cpu=job["use_cpu"], bf16=job["autocast"] == "bfloat16",
        fp16=job["autocast"] == "float16",
        # transformers 5's name; TRL's own default (gradient_checkpointing=True) then yields.
        activation_checkpointing=c["gradient_checkpointing"], seed=c["seed"],
        disable_dropout=True, dataloader_pin_memory=False, disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                         processing_class=tokenizer, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)
    train_start = _peer.clock()
    trainer.train()
    train_s = _peer.clock() - train_start
    metrics = trainer.evaluate()
    trainer.save_model(f"{job['out']}/policy")
    wall = _peer.clock() - start
    with open(f"{job['out']}/tokens.jsonl", "w", encoding="utf-8") as f:
        for part, data in (("train", trainer.train_dataset), ("val", trainer.eval_dataset)):
            for row in data:
                f.write(json.dumps({"part": part, "prompt": row["prompt_ids"],
                                    "chosen": row["chosen_ids"],
                                    "rejected": row["rejected_ids"]}) + "\n")
    _peer.report({"wall_s": wall, "train_s": train_s,
                  "pairs_per_s": len(train) * c["epochs"] / train_s,
                  "val_accuracy": metrics["eval_rewards/accuracies"],
                  "val_margin": metrics.get("eval_rewards/margins")})


if __name__ == "__main__":
    main()
