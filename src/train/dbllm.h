// DB-LLM (Chen et al. 2024, "DB-LLM: Accurate Dual-Binarization for Efficient LLMs", arXiv 2402.11960):
// W2 weights as Flexible Dual Binarization (train/fdb.h, stored as formats/dualbin.h), trained
// quantization-aware by Deviation-Aware Distillation from the full-precision model (train/grad_ops.h
// dad_loss_backward) on text the full-precision model generates itself (data-free, as LLM-QAT, Liu et al.
// 2023 §2.1). No reference code was published; docs/db-llm.md lists what follows the paper and what lowbit
// chose where it is silent.
//
// It is the quantization method "db-llm" (`lowbit quantize --method db-llm`, a study row): a whole-model
// method (quant/method.h quantize_model) registered from this layer by register_train_methods(). Training
// state is checkpointed in QuantConfig::work_dir and resumed from there with an identical result.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "quant/method.h"

namespace lowbit {

const Method& db_llm_method();
// Registers the methods that need the training engine (db-llm); idempotent. Call before parsing a method.
void register_train_methods();

// LLM-QAT's data-free generation (Liu et al. 2023 §2.1): each sequence starts from a token drawn uniformly
// from the vocabulary (BOS/EOS excluded), takes the model's top-1 for the next `greedy` tokens, then samples
// from its softmax (temperature 1). Deterministic for a seed: sequence i draws from subkeys of (seed, i).
std::vector<std::vector<int32_t>> generate_self_data(const class LlamaModel& model, int n_seq, int seq_len,
                                                     uint64_t seed, int greedy = 3, bool quiet = false);

// For tests of the resume guarantee: called after each completed step (and its checkpoint, when one was due)
// with the step number; throwing from it abandons the run as a kill would.
void set_db_llm_step_hook(std::function<void(int64_t)> hook);

}  // namespace lowbit
