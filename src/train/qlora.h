// The three fine-tuning methods of the study's LoRA-FT table, as what they do to the frozen base and to the
// adapters (Dettmers et al. 2023, QLoRA; Qin et al. 2024, IR-QLoRA):
//   lora      dense base (as loaded), plain LoRA
//   qlora     every linear of every block quantized to NF4 with double quantization (bitsandbytes
//             Linear4bit, compress_statistics; not the LM head), plain LoRA
//   ir-qlora  NF4 with ICQ (the per-block entropy-maximising shift) and double quantization, LoRA with IEC
#pragma once
#include <string>

#include "model/llama.h"
#include "train/lora.h"

namespace lowbit {

// "lora", "qlora" or "ir-qlora"; anything else is a clear error.
void check_finetune_method(const std::string& method);
// The adapters' IEC flag for the method.
bool method_uses_iec(const std::string& method);
// Replaces the base's linears as the method prescribes (nothing for "lora"). quiet: no progress bar.
void prepare_finetune_base(LlamaModel& model, const std::string& method, bool quiet = false);

// Evaluation of a fine-tuned model: base + the adapter in dir (read_adapter_config's method decides how the
// base is prepared), attached unmerged. The adapter's recorded base fingerprint must be the model's.
void apply_adapter(LlamaModel& model, const std::string& dir, bool quiet = false);

}  // namespace lowbit
