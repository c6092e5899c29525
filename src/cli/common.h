// Helpers shared by the subcommands: loading a model + its tokenizer by name or path.
#pragma once
#include <memory>
#include <string>

#include "cli/commands.h"
#include "io/tokenizer.h"
#include "model/llama.h"

namespace lowbit::cli {

struct LoadedModel {
  std::string path;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// adapter: a LoRA adapter directory (lowbit finetune's --out, or PEFT's) applied to the model (train/qlora.h
// apply_adapter: the base prepared as its method prescribes, the adapter attached unmerged); "" for none.
LoadedModel load_model(const Global& g, const std::string& arg, bool need_tokenizer = true,
                       const std::string& adapter = "");
// Adds --adapter DIR to a subcommand.
void add_adapter_option(CLI::App* sub, std::string& adapter);

std::string ids_sha256(const std::vector<int32_t>& ids);  // sha256 of the ids as int32 little-endian

}  // namespace lowbit::cli
