// libFuzzer target for the GPTQ / AWQ checkpoint converter (io/hf_quantized.h): a safetensors file whose
// tensors claim to be quantized linears ("L.qweight", "L.qzeros", "L.scales", "L.g_idx", "L.bias"), with the
// quantization_config as JSON in the file's metadata ("quantization_config"; a plain GPTQ 4-bit g128 config
// when absent). lowbit::Error is the expected outcome for bad input; a checkpoint that converts is read back
// through the affine format's validating reader and dequantized whole, so a validation gap shows up as an
// out-of-bounds read under ASan.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "formats/affine.h"
#include "io/checkpoint.h"
#include "io/hf_quantized.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::SafetensorsFile f = lowbit::parse_safetensors_bytes(data, size, "fuzz.safetensors");
    lowbit::Checkpoint c;
    c.path = "fuzz";
    c.format = "hf-safetensors";
    c.tensors = f.tensors;
    auto m = f.metadata.find("quantization_config");
    c.config.quantization_config =
        m != f.metadata.end() ? lowbit::parse_json_text(m->second, "fuzz.safetensors metadata")
                              : lowbit::Json{{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}};
    if (!lowbit::convert_hf_quantized(c, "/nonexistent-fuzz-dir")) return 0;
    auto get = [&](std::string_view suffix) -> const lowbit::TensorView* {
      auto it = c.tensors.find("L." + std::string(suffix));
      return it == c.tensors.end() ? nullptr : &it->second;
    };
    const lowbit::TensorView* codes = get("qcodes");
    if (!codes || codes->shape.size() != 2) return 0;
    const int64_t rows = codes->shape[0], rb = codes->shape[1];
    // The converted weight's columns are whichever bit width packs them into rb bytes per row.
    for (int b = 2; b <= 8; ++b) {
      if (rb * 8 % b != 0) continue;
      try {
        const int64_t cols = rb * 8 / b;
        auto w = lowbit::affine_format().from_tensors(get, rows, cols, "fuzz.safetensors: L");
        std::vector<float> out(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) lowbit::affine_format().dequantize_ref(*w, r, 1, out.data());
      } catch (const lowbit::Error&) {
      }
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
