"""TRL 0.29.1's PPOTrainer (trl.experimental.ppo), N steps (run in bench/.peer-venvs/trl029).

Job keys: model (the base folder), reward_model (a sequence-classification folder on the same
base), prompts (jsonl of {"messages": [...]}: each is chat-templated with the generation prompt,
as TRL's PPO example script does), out, steps, batch_size, mini_batch_size, ppo_epochs,
response_length, lora_r, seed, use_cpu.

Matched to ours: batch 16 prompts a step, mini-batch 4 (TRL: per_device_train_batch_size =
batch, num_mini_batches = batch / mini-batch, so each optimiser step sees one mini-batch, as
ours does), 4 PPO epochs, 24 new tokens, LoRA rank r on the policy (peft_config, which 0.29.1
supports: it wraps the policy only, and the disabled adapter is the reference). TRL's own way
for the rest, as its example script does: the value model is a separate full
AutoModelForSequenceClassification of the base, trained in full (TRL has no LoRA value head),
the reward model a third model; left padding; TRL's defaults (bf16 autocast with use_cpu on a
CPU, its learning rate, temperature 0.7, no stop token, so every response is response_length
tokens). num_sample_generations=0: TRL's default 10 would print sample generations at every
step of a run this short (ours' sample_every is off too).

Timed (run_s): from after the imports to the end of train(), model loading included; the
orchestrator differences two runs (8 and 2 steps) so fixed costs cancel. Peak RSS: the process.
"""

from __future__ import annotations

import _peer  # first: it sets the offline switches before the imports below
import torch
from datasets import Dataset, disable_progress_bars
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl.experimental.ppo import PPOConfig, PPOTrainer


def main() -> None:
    job = _peer.load_job()
    disable_progress_bars()
    torch.manual_seed(job["seed"])
    start = _peer.clock()
    tokenizer = AutoTokenizer.from_pretrained(job["model"], padding_side="left")
    rows = _peer.read_jsonl(job["prompts"])
    prompts = Dataset.from_dict({"input_ids": [
        tokenizer.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=True,
                                      return_dict=False) for r in rows]})
    policy = AutoModelForCausalLM.from_pretrained(job["model"])
    value = AutoModelForSequenceClassification.from_pretrained(job["model"], num_labels=1)
    reward = AutoModelForSequenceClassification.from_pretrained(job["reward_model"],
                                                                num_labels=1)
    batch, mini = job["batch_size"], job["mini_batch_size"]
    args = PPOConfig(output_dir=job["out"], per_device_train_batch_size=batch,
                     num_mini_batches=batch // mini, num_ppo_epochs=job["ppo_epochs"],
                     response_length=job["response_length"], total_episodes=job["steps"] * batch,
                     num_sample_generations=0, seed=job["seed"], use_cpu=job["use_cpu"],
                     report_to="none", disable_tqdm=True)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward, value_model=value, train_dataset=prompts,
                         eval_dataset=prompts.select(range(min(batch, len(prompts)))),
                         peft_config=LoraConfig(task_type="CAUSAL_LM", r=job["lora_r"]))
    train_start = _peer.clock()
    trainer.train()
    end = _peer.clock()
    peft = trainer.model.policy.peft_config["default"]
    _peer.report({"run_s": end - start, "train_s": end - train_start,
                  "steps": trainer.state.global_step, "bf16": args.bf16,
                  "gradient_checkpointing": args.gradient_checkpointing,
                  "learning_rate": args.learning_rate, "lora_alpha": peft.lora_alpha,
                  "lora_targets": sorted(peft.target_modules),
                  "value_trainable_params": sum(p.numel() for p in value.parameters()
                                                if p.requires_grad)})


if __name__ == "__main__":
    main()
