#include "io/packed_tensors.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lowbit {

const Format* packed_format_of(const Checkpoint& ckpt, const std::string& prefix) {
  if (ckpt.has(prefix + ".weight")) return nullptr;
  const Json& qc = ckpt.config.quantization_config;
  if (qc.is_object()) {
    // A format this linear is named with must be known; a whole-model "format" that is not a format name
    // (lowbit's first checkpoints wrote "lowbit-packed-v1") leaves the marker tensors to decide.
    if (auto lf = qc.find("linear_formats"); lf != qc.end() && lf->is_object())
      if (auto it = lf->find(prefix); it != lf->end() && it->is_string()) {
        const std::string named = it->get<std::string>();
        if (const Format* f = find_format(named)) return f;
        std::string known;
        for (const Format* k : packed_formats()) known += (known.empty() ? "" : ", ") + k->name;
        fail("{}: {} is stored in format '{}', which this lowbit does not know ({})", ckpt.path, prefix,
             named, known);
      }
    if (auto f = qc.find("format"); f != qc.end() && f->is_string())
      if (const Format* named = find_format(f->get<std::string>())) return named;
  }
  for (const Format* f : packed_formats())
    if (ckpt.has(prefix + "." + f->marker_suffix)) return f;
  return nullptr;
}

std::shared_ptr<PackedWeight> packed_linear_view(const Checkpoint& ckpt, const std::string& prefix,
                                                 int64_t rows, int64_t cols) {
  const Format* f = packed_format_of(ckpt, prefix);
  if (!f) fail("{}: {} is not a packed linear", ckpt.path, prefix);
  auto get = [&](std::string_view suffix) -> const TensorView* {
    auto it = ckpt.tensors.find(prefix + "." + std::string(suffix));
    return it == ckpt.tensors.end() ? nullptr : &it->second;
  };
  // Errors name the file holding the tensors when the checkpoint spans several.
  const TensorView* marker = get(f->marker_suffix);
  const std::string& src = marker && !marker->source.empty() ? marker->source : ckpt.path;
  return f->from_tensors(get, rows, cols, fmt::format("{}: {}", src, prefix));
}

void add_packed_tensors(std::map<std::string, TensorView>& out, const std::string& prefix,
                        const PackedWeight& w) {
  for (FormatTensor& t : w.format().tensors(w)) out[prefix + "." + t.suffix] = std::move(t.view);
}

}  // namespace lowbit
