#include "io/hf_quantized.h"

#include <fmt/format.h>

#include <cstring>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/json.h"
#include "core/paths.h"
#include "formats/affine.h"
#include "formats/gptq_layout.h"

namespace lowbit {

namespace {

constexpr std::string_view kQweight = ".qweight";

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The settings read from quantization_config (or quantize_config.json), with the file they came from.
struct Settings {
  std::string file;
  std::string method;  // "gptq" or "awq"
  int bits = 4;
  int64_t group_size = 128;  // −1: per channel
  bool desc_act = false, sym = true;
  std::string checkpoint_format = "gptq";  // GPTQ: "gptq" or "gptq_v2"
  std::string version = "gemm";            // AWQ
};

const Json* key(const Json& j, const char* k) {
  auto it = j.find(k);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

bool get_bool(const Json& j, const char* k, bool def, const std::string& file) {
  const Json* v = key(j, k);
  if (!v) return def;
  if (!v->is_boolean()) fail("{}: quantization_config.{} must be true or false, got {}", file, k, v->dump());
  return v->get<bool>();
}

int64_t get_int(const Json& j, const char* k, int64_t def, const std::string& file) {
  const Json* v = key(j, k);
  if (!v) return def;
  if (!v->is_number_integer())
    fail("{}: quantization_config.{} must be an integer, got {}", file, k, v->dump());
  return v->get<int64_t>();
}

std::string lower(std::string s) {
  for (char& ch : s)
    if (ch >= 'A' && ch <= 'Z') ch = char(ch - 'A' + 'a');
  return s;
}

Settings parse_settings(const Json& qc, const std::string& file, const std::string& method) {
  Settings s;
  s.file = file;
  s.method = method;
  const int64_t bits = get_int(qc, "bits", method == "awq" ? get_int(qc, "w_bit", 4, file) : 4, file);
  if (method == "awq" ? bits != 4 : !(bits == 2 || bits == 3 || bits == 4 || bits == 8))
    fail("{}: quantization_config.bits {} is not supported for {} ({})", file, bits, method,
         method == "awq" ? "the AutoAWQ GEMM layout is 4-bit" : "2, 3, 4, 8");
  s.bits = int(bits);
  s.group_size =
      get_int(qc, "group_size", method == "awq" ? get_int(qc, "q_group_size", 128, file) : 128, file);
  if (s.group_size == 0 || s.group_size < -1)
    fail("{}: quantization_config.group_size {} must be positive or -1 (per channel)", file, s.group_size);
  if (method == "gptq") {
    s.desc_act = get_bool(qc, "desc_act", false, file);
    s.sym = get_bool(qc, "sym", true, file);
    // GPTQModel writes "checkpoint_format"; some of its versions wrote the same value as "format".
    const Json* cf = key(qc, "checkpoint_format");
    if (!cf) cf = key(qc, "format");
    if (cf) {
      if (!cf->is_string())
        fail("{}: quantization_config.checkpoint_format must be a string, got {}", file, cf->dump());
      s.checkpoint_format = cf->get<std::string>();
    }
    if (s.checkpoint_format != "gptq" && s.checkpoint_format != "gptq_v2")
      fail("{}: unknown GPTQ checkpoint_format '{}' (lowbit reads 'gptq' and 'gptq_v2')", file,
           s.checkpoint_format);
  } else {
    if (const Json* v = key(qc, "version")) {
      if (!v->is_string()) fail("{}: quantization_config.version must be a string, got {}", file, v->dump());
      s.version = lower(v->get<std::string>());
    }
    if (s.version != "gemm")
      fail("{}: AWQ version '{}' is not supported (lowbit reads the AutoAWQ 'gemm' layout)", file, s.version);
    if (!get_bool(qc, "zero_point", true, file))
      fail("{}: AWQ with zero_point false is not supported (the GEMM layout stores zero-points)", file);
  }
  return s;
}

std::string describe(const Settings& s) {
  const std::string group = s.group_size == -1 ? "per-channel" : fmt::format("g{}", s.group_size);
  if (s.method == "awq") return fmt::format("awq {}-bit {} (AutoAWQ GEMM layout)", s.bits, group);
  return fmt::format("gptq {}-bit {}{}{} (AutoGPTQ layout, checkpoint_format {})", s.bits, group,
                     s.desc_act ? " desc_act" : "", s.sym ? " sym" : " asym", s.checkpoint_format);
}

// A tensor's elements copied to aligned memory (safetensors does not align tensors).
template <class T>
std::vector<T> copy_of(const TensorView& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

struct Storage {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;
};

// One linear's source tensors, checked for dtype and rank; errors name the file and tensor.
struct Source {
  std::string prefix, file;
  const TensorView *qweight = nullptr, *qzeros = nullptr, *scales = nullptr, *g_idx = nullptr,
                   *bias = nullptr;
};

const TensorView* find(const Checkpoint& c, const std::string& name) {
  auto it = c.tensors.find(name);
  return it == c.tensors.end() ? nullptr : &it->second;
}

void expect(const Source& s, const TensorView& t, const char* suffix, DType dt, size_t rank) {
  if (t.dtype != dt || t.shape.size() != rank)
    fail("{}: {}.{} is {} {}, expected a {}-D {} tensor", s.file, s.prefix, suffix, dtype_name(t.dtype),
         shape_str(t.shape), rank, dtype_name(dt));
}

void expect_shape(const Source& s, const TensorView& t, const char* suffix, std::vector<int64_t> want,
                  const std::string& why) {
  if (t.shape != want)
    fail("{}: {}.{} has shape {}, expected {} ({})", s.file, s.prefix, suffix, shape_str(t.shape),
         shape_str(want), why);
}

Source source_of(const Checkpoint& c, const std::string& prefix) {
  Source s;
  s.prefix = prefix;
  s.qweight = find(c, prefix + ".qweight");
  s.file = s.qweight->source.empty() ? c.path : s.qweight->source;
  s.qzeros = find(c, prefix + ".qzeros");
  s.scales = find(c, prefix + ".scales");
  s.g_idx = find(c, prefix + ".g_idx");
  s.bias = find(c, prefix + ".bias");
  if (!s.qzeros)
    fail("{}: {}.qzeros is missing (a quantized linear needs qweight, qzeros and scales)", s.file, prefix);
  if (!s.scales)
    fail("{}: {}.scales is missing (a quantized linear needs qweight, qzeros and scales)", s.file, prefix);
  expect(s, *s.qweight, "qweight", DType::I32, 2);
  expect(s, *s.qzeros, "qzeros", DType::I32, 2);
  expect(s, *s.scales, "scales", DType::F16, 2);
  if (s.g_idx) expect(s, *s.g_idx, "g_idx", DType::I32, 1);
  if (s.bias) {
    if (!is_float(s.bias->dtype))
      fail("{}: {}.bias has dtype {}, expected a float tensor", s.file, prefix, dtype_name(s.bias->dtype));
    const size_t es = dtype_size(s.bias->dtype);
    const auto* b = static_cast<const uint8_t*>(s.bias->data);
    for (size_t i = 0; i < s.bias->nbytes; i += es) {
      float v = 0;
      if (s.bias->dtype == DType::F32)
        std::memcpy(&v, b + i, 4);
      else {
        uint16_t h;
        std::memcpy(&h, b + i, 2);
        v = s.bias->dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      if (v != 0)
        fail("{}: {}.bias[{}] = {} is non-zero (lowbit's LLaMA linears have no bias)", s.file, prefix, i / es,
             v);
    }
  }
  return s;
}

// Group count for in_features I; errors name the tensor.
int64_t groups_of(const Source& s, const Settings& st, int64_t I) {
  const int64_t gs = st.group_size == -1 ? I : st.group_size;
  if (I % gs != 0)
    fail("{}: {}: group_size {} does not divide in_features {}", s.file, s.prefix, st.group_size, I);
  return I / gs;
}

AffineWeight convert_gptq(const Source& s, const Settings& st) {
  const int b = st.bits;
  const int64_t O = s.qweight->shape[1];
  const int64_t rows_w = s.qweight->shape[0];
  if (rows_w <= 0 || O <= 0 || (rows_w * 32) % b != 0)
    fail("{}: {}.qweight has shape {}, which is not (in_features·{}/32, out_features)", s.file, s.prefix,
         shape_str(s.qweight->shape), b);
  const int64_t I = rows_w * 32 / b;
  const int64_t G = groups_of(s, st, I);
  const std::string why =
      fmt::format("in_features {}, out_features {}, {} bits, group_size {}", I, O, b, st.group_size);
  if (O * b % 32 != 0)
    fail("{}: {}: out_features {} does not pack into whole int32 words at {} bits", s.file, s.prefix, O, b);
  expect_shape(s, *s.scales, "scales", {G, O}, why);
  expect_shape(s, *s.qzeros, "qzeros", {G, O * b / 32}, why);
  if (s.g_idx) expect_shape(s, *s.g_idx, "g_idx", {I}, why);
  const std::vector<int32_t> qw = copy_of<int32_t>(*s.qweight), qz = copy_of<int32_t>(*s.qzeros);
  const std::vector<uint16_t> sc = copy_of<uint16_t>(*s.scales);
  const std::vector<int32_t> gi = s.g_idx ? copy_of<int32_t>(*s.g_idx) : std::vector<int32_t>();
  GptqView v;
  v.bits = b, v.in_features = I, v.out_features = O, v.group_size = I / G;
  v.qweight = qw, v.qzeros = qz, v.scales = sc, v.g_idx = gi;
  const GptqZeros conv = st.checkpoint_format == "gptq_v2" ? GptqZeros::kExact : GptqZeros::kMinusOne;
  AffineWeight w = from_gptq(v, conv, fmt::format("{}: {}", s.file, s.prefix));
  const uint32_t maxq = (1u << b) - 1;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t g = 0; g < G; ++g)
      if (w.zeros[o * G + g] > maxq)
        fail(
            "{}: {}.qzeros group {} column {} decodes to zero-point {} ({} stores the zero-point minus one, "
            "and 2^{} does not fit lowbit's {}-bit zero-points)",
            s.file, s.prefix, g, o, w.zeros[o * G + g], st.checkpoint_format, b, b);
  return w;
}

// AutoAWQ GEMM: nibble j of a word holds output 8w + kAwqOrder[j].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

AffineWeight convert_awq(const Source& s, const Settings& st) {
  const int64_t I = s.qweight->shape[0], W = s.qweight->shape[1], O = W * 8;
  if (I <= 0 || W <= 0 || I > (int64_t(1) << 24) || W > (int64_t(1) << 21))
    fail("{}: {}.qweight has shape {}, expected (in_features, out_features/8)", s.file, s.prefix,
         shape_str(s.qweight->shape));
  if (s.g_idx) fail("{}: {}.g_idx: the AWQ layout has no g_idx", s.file, s.prefix);
  const int64_t G = groups_of(s, st, I), gs = I / G;
  const std::string why =
      fmt::format("in_features {}, out_features {}, 4 bits, group_size {}", I, O, st.group_size);
  expect_shape(s, *s.scales, "scales", {G, O}, why);
  expect_shape(s, *s.qzeros, "qzeros", {G, W}, why);
  const std::vector<int32_t> qw = copy_of<int32_t>(*s.qweight), qz = copy_of<int32_t>(*s.qzeros);
  const std::vector<uint16_t> sc = copy_of<uint16_t>(*s.scales);

  auto st_ = std::make_shared<Storage>();
  AffineWeight w;
  w.bits = 4, w.rows = O, w.cols = I, w.group_size = gs;
  const size_t rb = w.row_bytes();
  st_->codes.assign(rb * size_t(O), 0);
  for (int64_t i = 0; i < I; ++i)
    for (int64_t k = 0; k < W; ++k) {
      const uint32_t word = uint32_t(qw[size_t(i * W + k)]);
      for (int j = 0; j < 8; ++j) {
        const int64_t o = 8 * k + kAwqOrder[j];
        pack_code(st_->codes.data() + size_t(o) * rb, 4, i, (word >> (4 * j)) & 15u);
      }
    }
  st_->zeros.resize(size_t(O * G));
  st_->scales.resize(size_t(O * G));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t k = 0; k < W; ++k) {
      const uint32_t word = uint32_t(qz[size_t(g * W + k)]);
      for (int j = 0; j < 8; ++j)
        st_->zeros[size_t((8 * k + kAwqOrder[j]) * G + g)] = uint8_t((word >> (4 * j)) & 15u);
    }
    for (int64_t o = 0; o < O; ++o) {
      const uint16_t h = sc[size_t(g * O + o)];
      if ((h & 0x7C00) == 0x7C00)
        fail("{}: {}.scales[{}][{}] is not finite (fp16 bits 0x{:04x})", s.file, s.prefix, g, o, h);
      st_->scales[size_t(o * G + g)] = h;
    }
  }
  w.codes = st_->codes.data();
  w.scales = st_->scales.data();
  w.zeros = st_->zeros.data();
  w.owner = std::move(st_);
  return w;
}

// The (rows, cols) config.json gives linear `prefix` of a LLaMA layer, or (0, 0) for another name.
std::pair<int64_t, int64_t> config_shape(const ModelConfig& c, const std::string& prefix) {
  const int64_t E = c.n_embd, F = c.n_ff, Q = int64_t(c.n_head) * c.head_dim,
                K = int64_t(c.n_kv_head) * c.head_dim;
  const std::pair<const char*, std::pair<int64_t, int64_t>> known[] = {
      {".self_attn.q_proj", {Q, E}}, {".self_attn.k_proj", {K, E}}, {".self_attn.v_proj", {K, E}},
      {".self_attn.o_proj", {E, Q}}, {".mlp.gate_proj", {F, E}},    {".mlp.up_proj", {F, E}},
      {".mlp.down_proj", {E, F}}};
  for (const auto& [suffix, shape] : known)
    if (ends_with(prefix, suffix)) return shape;
  return {0, 0};
}

}  // namespace

bool convert_hf_quantized(Checkpoint& c, const std::string& dir) {
  std::vector<std::string> prefixes;
  for (const auto& [name, t] : c.tensors)
    if (ends_with(name, kQweight)) prefixes.push_back(name.substr(0, name.size() - kQweight.size()));
  if (prefixes.empty()) return false;

  // The settings: config.json's quantization_config, else old AutoGPTQ's quantize_config.json.
  Json qc = c.config.quantization_config;
  std::string file = dir + "/config.json";
  if (!qc.is_object()) {
    const std::string qf = dir + "/quantize_config.json";
    if (!path_exists(qf))
      fail(
          "{}: {}.qweight is a quantized linear, but config.json has no quantization_config and there is no "
          "quantize_config.json",
          dir, prefixes[0]);
    qc = parse_json_file(qf);
    file = qf;
    if (!qc.is_object()) fail("{}: not a JSON object", qf);
  }
  std::string method = "gptq";  // quantize_config.json of old AutoGPTQ names no method
  if (const Json* m = key(qc, "quant_method")) {
    if (!m->is_string())
      fail("{}: quantization_config.quant_method must be a string, got {}", file, m->dump());
    method = lower(m->get<std::string>());
  }
  if (method != "gptq" && method != "awq")
    fail("{}: {}.qweight: quant_method '{}' is not supported (lowbit reads 'gptq' and 'awq' checkpoints)",
         file, prefixes[0], method);
  const Settings st = parse_settings(qc, file, method);

  for (const std::string& p : prefixes) {
    const Source s = source_of(c, p);
    if (p == "lm_head" || p == "model.embed_tokens")
      fail("{}: {} is quantized; lowbit keeps the embedding and the output head dense", s.file, p);
    AffineWeight w = method == "gptq" ? convert_gptq(s, st) : convert_awq(s, st);
    const auto [rows, cols] = config_shape(c.config, p);
    if (rows > 0 && (w.rows != rows || w.cols != cols))
      fail("{}: {}.qweight holds a ({}, {}) weight (out_features, in_features), config.json expects ({}, {})",
           s.file, p, w.rows, w.cols, rows, cols);
    for (const char* suffix : {"qweight", "qzeros", "scales", "g_idx", "bias"})
      c.tensors.erase(p + "." + suffix);
    for (FormatTensor& t : affine_format().tensors(w)) {
      t.view.source = s.file;
      c.tensors[p + "." + t.suffix] = std::move(t.view);
    }
    c.owners.push_back(w.owner);
  }
  Json out = qc;
  out["format"] = "affine";
  if (method == "gptq") out["checkpoint_format"] = st.checkpoint_format;
  c.config.quantization_config = std::move(out);
  c.source_quantization = describe(st);
  return true;
}

}  // namespace lowbit
