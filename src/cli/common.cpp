#include "cli/common.h"

#include <bit>

#include "core/sha256.h"

namespace lowbit::cli {

LoadedModel load_model(const Global& g, const std::string& arg, bool need_tokenizer) {
  LoadedModel lm;
  lm.path = resolve_model_path(arg, g.paths());
  lm.model = std::make_unique<LlamaModel>(load_checkpoint(lm.path));
  if (need_tokenizer) lm.tokenizer = load_tokenizer_for_model(lm.path);
  return lm;
}

std::string ids_sha256(const std::vector<int32_t>& ids) {
  static_assert(std::endian::native == std::endian::little, "token sha256 assumes a little-endian host");
  return sha256_hex(ids.data(), ids.size() * sizeof(int32_t));
}

}  // namespace lowbit::cli
