// The fine-tuning loop (QLoRA's recipe, artidoro/qlora qlora.py on HF's Trainer): micro-batches accumulated
// to an effective batch, AdamW on the adapters with a warmup schedule and global-norm clipping, and training
// state checkpointed atomically so that a run killed at any point and resumed ends with exactly the adapter
// of an uninterrupted run.
//
// DIR/checkpoint/ holds the state of the last completed checkpoint step: the adapter (PEFT layout), the
// optimiser's moments, and trainer_state.json (step, data position, options, losses). It is written as
// DIR/checkpoint.tmp and swapped in by renames, so a kill leaves either the old or the new one whole.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/data.h"
#include "train/llama_train.h"
#include "train/peft.h"

namespace lowbit {

struct FinetuneOptions {
  int64_t steps = 100;                // optimiser steps
  int batch = 16;                     // examples per optimiser step (qlora: per_device 16 × accumulation 1)
  int micro_batch = 4;                // examples per forward/backward; batch must be a multiple of it
  double lr = 2e-4;                   // peak learning rate
  std::string schedule = "constant";  // "constant" or "cosine", each with linear warmup
  double warmup_ratio = 0.03;
  double max_grad_norm = 0.3;  // 0 = no clipping
  double weight_decay = 0.0;
  uint64_t seed = 42;       // data order and dropout masks
  int64_t save_every = 50;  // checkpoint every this many steps (and at the end)
  bool recompute = true;    // per-layer gradient checkpointing
  bool quiet = false;       // no progress bar
};

struct FinetuneResult {
  int64_t steps = 0;           // optimiser steps taken in total (including those before a resume)
  int64_t resumed_from = 0;    // the step the run resumed at (0: a fresh run)
  double last_loss = 0;        // mean target cross-entropy of the last step
  int64_t tokens = 0;          // tokens processed by this process (forward and backward)
  double seconds = 0;          // this process's training time
  std::vector<double> losses;  // per step, from step 1 (including before a resume)
  // Over every run that made the adapter: the tokens of all steps, and the training time of the steps kept
  // (those a killed run had checkpointed, then this run's), so a resumed fine-tune reports its whole cost.
  // Saved in the checkpoint; a checkpoint from before they were recorded counts from 0.
  int64_t total_tokens = 0;
  double total_seconds = 0;
};

// Trains `lora` on `data` for opt.steps steps over the frozen `model`, checkpointing under out_dir; resumes
// from out_dir/checkpoint when it exists (its options must match). Writes the final adapter to out_dir.
// Throws Error when the loss or gradient norm stops being finite (the last good checkpoint stays).
FinetuneResult finetune(const LlamaModel& model, LoraSet& lora, const std::vector<TrainExample>& data,
                        const FinetuneOptions& opt, const AdapterMeta& meta, const std::string& out_dir);

// For tests of the resume guarantee: called after each completed step with the step number; throwing from
// it abandons the run as a kill would (after the checkpoint of that step, if one was due, is written).
void set_finetune_step_hook(std::function<void(int64_t)> hook);

}  // namespace lowbit
