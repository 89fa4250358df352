"""TRL 1.x RewardTrainer, one whole job, at TRL's defaults (run in bench/.peer-venvs/trl).

Job keys: model (folder), train / val (jsonl in TRL's conversational preference format:
prompt, chosen, rejected as message lists), out (folder), batch_size, epochs, lora_r,
max_length, seed, use_cpu. Everything else is TRL's default, as a user would write it: the
model passed as a path (TRL loads AutoModelForSequenceClassification with one label),
LoraConfig(task_type="SEQ_CLS", r=...) with peft's other defaults (alpha 8, peft's default
target modules for the architecture), TRL's learning rate, schedule, bf16 autocast (which on a
CPU needs use_cpu=True) and gradient checkpointing. One exception that costs nothing: the
evaluation runs as one batch, so TRL's eval_accuracy (a mean of per-batch means) is exactly the
share of held-out pairs ranked right.

Timed (wall_s): from after the imports to the saved adapter: loading the model, tokenising,
training, evaluating, saving; the same span as ours' train_reward_model call.
"""

from __future__ import annotations

import _peer  # first: it sets the offline switches before the imports below
from datasets import Dataset, disable_progress_bars
from peft import LoraConfig
from trl import RewardConfig, RewardTrainer


def main() -> None:
    job = _peer.load_job()
    disable_progress_bars()
    start = _peer.clock()
    train = Dataset.from_list(_peer.read_jsonl(job["train"]))
    val = Dataset.from_list(_peer.read_jsonl(job["val"]))
    args = RewardConfig(output_dir=job["out"], per_device_train_batch_size=job["batch_size"],
                        per_device_eval_batch_size=len(val), num_train_epochs=job["epochs"],
                        max_length=job["max_length"], seed=job["seed"], use_cpu=job["use_cpu"],
                        report_to="none", disable_tqdm=True)
    trainer = RewardTrainer(model=job["model"], args=args, train_dataset=train,
                            eval_dataset=val,
                            peft_config=LoraConfig(task_type="SEQ_CLS", r=job["lora_r"]))
    train_start = _peer.clock()
    trainer.train()
    train_s = _peer.clock() - train_start
    metrics = trainer.evaluate()
    trainer.save_model(f"{job['out']}/adapter")
    wall = _peer.clock() - start
    peft = trainer.model.peft_config["default"]
    _peer.report({"wall_s": wall, "train_s": train_s,
                  "pairs_per_s": len(train) * job["epochs"] / train_s,
                  "val_accuracy": metrics["eval_accuracy"], "val_pairs": len(val),
                  "steps": trainer.state.global_step, "bf16": args.bf16,
                  "gradient_checkpointing": args.gradient_checkpointing,
                  "learning_rate": args.learning_rate, "lora_alpha": peft.lora_alpha,
                  "lora_targets": sorted(peft.target_modules)})


if __name__ == "__main__":
    main()
