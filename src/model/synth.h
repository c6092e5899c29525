// A random-weight Hugging Face LLaMA checkpoint of a real model's shape, for speed and memory benchmarks of
// shapes we cannot ship (LLaMA-3.2-1B, LLaMA-3-8B, ...). Weights are uniform with standard deviation 0.02
// (the LLaMA initializer range), norms are 1; outputs are meaningless but the cost is real. `lowbit synth`
// is its command line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lowbit {

struct SynthOptions {
  std::string shape = "llama3.2-1b";  // one of synth_shapes()
  DType dtype = DType::BF16;          // BF16, F16 or F32
  int layers = 0;                     // 0 = the shape's
  uint64_t seed = 0;
};

// The shape names, sorted.
const std::vector<std::string>& synth_shapes();

// Writes out_dir/model.safetensors and out_dir/config.json (creating out_dir); returns the number of tensors.
// The same options give the same bytes.
size_t synth_checkpoint(const SynthOptions& opts, const std::string& out_dir);

}  // namespace lowbit
