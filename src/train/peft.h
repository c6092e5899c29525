// LoRA adapters on disk in PEFT's layout, so a PEFT user can load a lowbit adapter and the other way round:
//   DIR/adapter_config.json        PEFT's LoraConfig (peft_type "LORA", r, lora_alpha, lora_dropout,
//                                  target_modules, ...) plus a "lowbit" object (method, IEC, the base
//                                  model's fingerprint)
//   DIR/adapter_model.safetensors  F32 "base_model.model.<module>.lora_A.weight" (r, in) and ".lora_B.weight"
//                                  (out, r), PEFT's names after get_peft_model_state_dict drops the adapter
//                                  name; with IEC also "<module>.lora_default_A_scale" / "_B_scale" (1), the
//                                  names IR-QLoRA's IRQLoraLinear4bit parameters get in that state dict.
#pragma once
#include <string>

#include "io/checkpoint.h"
#include "train/lora.h"

namespace lowbit {

// What identifies the base an adapter belongs to: SHA-256 over every tensor's name, dtype and shape, the
// whole of every 1-D tensor (the norms) and 64 evenly spaced 64-byte slices of every other tensor. Cheap on
// an 8B model (no full read) and different for any two real models; the original checkpoint's (a QLoRA base
// quantized in memory keeps its dense checkpoint's fingerprint).
std::string base_fingerprint(const Checkpoint& ck);

// A linear by its PEFT target_modules name ("q_proj", ..., "down_proj"); false when there is none.
bool linear_from_target_name(const std::string& name, LinearKind* out);

struct AdapterMeta {
  std::string method;            // "lora", "qlora", "ir-qlora"
  std::string base_model;        // base_model_name_or_path
  std::string base_fingerprint;  // base_fingerprint() of the base it was trained on
};

// Writes the adapter (each file atomically) into dir, creating it.
void save_adapter(const std::string& dir, LoraSet& lora, const AdapterMeta& meta);

// Reads DIR's config and meta without the weights.
struct AdapterFile {
  LoraConfig config;
  AdapterMeta meta;
};
AdapterFile read_adapter_config(const std::string& dir);
// The same from the file's text; `name` is used in errors. Throws Error (one line) on anything malformed.
AdapterFile parse_adapter_config(std::string_view text, const std::string& name);

// The adapter in dir for `model`. Throws Error with one line naming the file when the files are malformed,
// a tensor is missing, extra, of another dtype or shape than the model's linears imply, or the recorded base
// fingerprint is not `fingerprint` (pass "" to skip that check: an adapter from PEFT records none).
LoraSet load_adapter(const std::string& dir, const LlamaModel& model, const std::string& fingerprint);

}  // namespace lowbit
