#include "io/packed_tensors.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lowbit {

namespace {

// The format quantization_config names for `prefix`, or "" when it names none this build could use.
std::string named_format(const Checkpoint& ckpt, const std::string& prefix) {
  const Json& qc = ckpt.config.quantization_config;
  if (!qc.is_object()) return "";
  if (auto lf = qc.find("linear_formats"); lf != qc.end() && lf->is_object())
    if (auto it = lf->find(prefix); it != lf->end() && it->is_string()) return it->get<std::string>();
  if (auto f = qc.find("format"); f != qc.end() && f->is_string() && find_format(f->get<std::string>()))
    return f->get<std::string>();
  return "";
}

}  // namespace

const Format* packed_format_of(const Checkpoint& ckpt, const std::string& prefix) {
  if (ckpt.has(prefix + ".weight")) return nullptr;
  const std::string named = named_format(ckpt, prefix);
  if (!named.empty()) {
    const Format* f = find_format(named);
    if (!f) {
      std::string known;
      for (const Format* k : packed_formats()) known += (known.empty() ? "" : ", ") + k->name;
      fail("{}: {} is stored in format '{}', which this lowbit does not know ({})", ckpt.path, prefix, named,
           known);
    }
    return f;
  }
  for (const Format* f : packed_formats())
    if (ckpt.has(prefix + "." + f->marker_suffix)) return f;
  return nullptr;
}

std::shared_ptr<PackedWeight> packed_linear_view(const Checkpoint& ckpt, const std::string& prefix,
                                                 int64_t rows, int64_t cols) {
  const Format* f = packed_format_of(ckpt, prefix);
  if (!f) fail("{}: {} is not a packed linear", ckpt.path, prefix);
  std::string src = ckpt.path;
  auto get = [&](std::string_view suffix) -> const TensorView* {
    auto it = ckpt.tensors.find(prefix + "." + std::string(suffix));
    if (it == ckpt.tensors.end()) return nullptr;
    if (!it->second.source.empty()) src = it->second.source;
    return &it->second;
  };
  // The tensors' own file names the error when the checkpoint spans several.
  if (const TensorView* marker = get(f->marker_suffix); marker && !marker->source.empty())
    src = marker->source;
  return f->from_tensors(get, rows, cols, fmt::format("{}: {}", src, prefix));
}

void add_packed_tensors(std::map<std::string, TensorView>& out, const std::string& prefix,
                        const PackedWeight& w) {
  for (FormatTensor& t : w.format().tensors(w)) out[prefix + "." + t.suffix] = std::move(t.view);
}

}  // namespace lowbit
