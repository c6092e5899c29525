#include "cli/common.h"

#include <fmt/format.h>

#include <bit>

#include "core/sha256.h"
#include "train/qlora.h"

namespace lowbit::cli {

CLI::Validator at_least(int64_t min, std::optional<int64_t> sentinel, const std::string& sentinel_means) {
  auto check = [=](std::string& input) -> std::string {
    int64_t v = 0;
    if (!CLI::detail::lexical_cast(input, v)) return "";  // not an integer: the conversion reports it
    if (v >= min || (sentinel && v == *sentinel)) return "";
    if (sentinel)
      return fmt::format("{} must be at least {}, or {} for {}", input, min, *sentinel, sentinel_means);
    return fmt::format("{} must be at least {}", input, min);
  };
  return CLI::Validator(check,
                        sentinel ? fmt::format(">={} or {}", min, *sentinel) : fmt::format(">={}", min));
}

LoadedModel load_model(const Global& g, const std::string& arg, bool need_tokenizer,
                       const std::string& adapter) {
  LoadedModel lm;
  lm.path = resolve_model_path(arg, g.paths());
  lm.model = std::make_unique<LlamaModel>(load_checkpoint(lm.path));
  if (need_tokenizer) lm.tokenizer = load_tokenizer_for_model(lm.path);
  if (!adapter.empty()) apply_adapter(*lm.model, adapter);
  return lm;
}

void add_adapter_option(CLI::App* sub, std::string& adapter) {
  sub->add_option(
      "--adapter", adapter,
      "LoRA adapter directory (lowbit finetune --out, or PEFT's): evaluate base + adapter; a qlora / "
      "ir-qlora adapter gets its NF4 base");
}

std::string ids_sha256(const std::vector<int32_t>& ids) {
  static_assert(std::endian::native == std::endian::little, "token sha256 assumes a little-endian host");
  return sha256_hex(ids.data(), ids.size() * sizeof(int32_t));
}

}  // namespace lowbit::cli
