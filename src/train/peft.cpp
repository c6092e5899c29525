#include "train/peft.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/sha256.h"
#include "io/safetensors.h"

namespace lowbit {

namespace {

constexpr const char* kConfig = "adapter_config.json";
constexpr const char* kWeights = "adapter_model.safetensors";

// PEFT's target_modules names (the module's last path component).
std::string short_name(LinearKind k) {
  const std::string n = linear_name(k);
  return n.substr(n.find('.') + 1);
}

TensorView f32_view(const std::vector<float>& v, std::vector<int64_t> shape) {
  TensorView t;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.data = v.data();
  t.nbytes = v.size() * sizeof(float);
  return t;
}

}  // namespace

bool linear_from_target_name(const std::string& name, LinearKind* out) {
  for (LinearKind k : kAllLinears)
    if (short_name(k) == name) {
      *out = k;
      return true;
    }
  return false;
}

std::string base_fingerprint(const Checkpoint& ck) {
  Sha256 h;
  for (const auto& [name, t] : ck.tensors) {  // std::map: name order
    std::string head = name + "|" + std::string(dtype_name(t.dtype));
    for (int64_t d : t.shape) head += "|" + std::to_string(d);
    h.update(head.data(), head.size() + 1);
    const auto* p = static_cast<const uint8_t*>(t.data);
    if (t.shape.size() <= 1) {
      h.update(p, t.nbytes);
      continue;
    }
    constexpr size_t kSlices = 64, kSlice = 64;
    if (t.nbytes <= kSlices * kSlice) {
      h.update(p, t.nbytes);
      continue;
    }
    for (size_t i = 0; i < kSlices; ++i) h.update(p + (t.nbytes - kSlice) / (kSlices - 1) * i, kSlice);
  }
  return h.hex();
}

void save_adapter(const std::string& dir, LoraSet& lora, const AdapterMeta& meta) {
  std::filesystem::create_directories(dir);
  const LoraConfig& c = lora.config();
  Json cfg = {{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"r", c.rank},
              {"lora_alpha", c.alpha},
              {"lora_dropout", c.dropout},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"inference_mode", true},
              {"init_lora_weights", true},
              {"base_model_name_or_path", meta.base_model},
              {"modules_to_save", nullptr},
              {"layers_to_transform", nullptr},
              {"layers_pattern", nullptr},
              {"rank_pattern", Json::object()},
              {"alpha_pattern", Json::object()},
              {"revision", nullptr}};
  Json targets = Json::array();
  for (LinearKind k : c.targets) targets.push_back(short_name(k));
  cfg["target_modules"] = targets;
  cfg["lowbit"] = {{"method", meta.method},
                   {"iec", c.iec},
                   {"seed", std::to_string(c.seed)},
                   {"base_fingerprint", meta.base_fingerprint}};
  std::map<std::string, TensorView> tensors;
  std::vector<std::vector<float>> betas;  // the β scalars need storage that outlives the write
  betas.reserve(lora.entries().size() * 2);
  for (auto& e : lora.entries()) {
    const std::string p = "base_model.model." + e.module;
    const LoraAdapter& a = *e.adapter;
    tensors[p + ".lora_A.weight"] = f32_view(a.A, {a.r, a.in});
    tensors[p + ".lora_B.weight"] = f32_view(a.B, {a.out, a.r});
    if (c.iec) {
      betas.push_back({a.beta_a});
      tensors[p + ".lora_default_A_scale"] = f32_view(betas.back(), {1});
      betas.push_back({a.beta_b});
      tensors[p + ".lora_default_B_scale"] = f32_view(betas.back(), {1});
    }
  }
  write_safetensors(dir + "/" + kWeights, tensors, {{"format", "pt"}});
  write_file_atomic(dir + "/" + kConfig, cfg.dump(2) + "\n");
}

AdapterFile read_adapter_config(const std::string& dir) {
  const std::string path = dir + "/" + kConfig;
  if (!std::filesystem::exists(path)) fail("{}: no such file (not a LoRA adapter directory)", path);
  const MappedFile f(path);
  return parse_adapter_config(std::string_view(reinterpret_cast<const char*>(f.data()), f.size()), path);
}

AdapterFile parse_adapter_config(std::string_view text, const std::string& path) {
  const Json j = parse_json_text(text, path);
  AdapterFile out;
  try {
    if (!j.is_object()) fail("not a JSON object");
    if (j.value("peft_type", "") != "LORA") fail("peft_type is not \"LORA\"");
    // Check the type first: get<int> of a float such as 1e42 is undefined behaviour (found by adapter_fuzz).
    const Json& r = j.at("r");
    if (!r.is_number_integer() || r.get<int64_t>() <= 0 || r.get<int64_t>() > (1 << 16))
      fail("r = {} is not an integer in [1, 65536]", r.dump());
    out.config.rank = int(r.get<int64_t>());
    out.config.alpha = j.at("lora_alpha").get<double>();
    out.config.dropout = j.value("lora_dropout", 0.0);
    if (j.value("bias", "none") != "none")
      fail("bias '{}' is not supported (only \"none\")", j.value("bias", ""));
    if (j.value("fan_in_fan_out", false)) fail("fan_in_fan_out adapters are not supported");
    out.config.targets.clear();
    const Json& tm = j.at("target_modules");
    std::vector<std::string> names;
    if (tm.is_string())
      names.push_back(tm.get<std::string>());
    else
      names = tm.get<std::vector<std::string>>();
    for (const std::string& n : names) {
      LinearKind k;
      if (!linear_from_target_name(n, &k)) fail("target module '{}' is not one of LLaMA's linears", n);
      out.config.targets.push_back(k);
    }
    std::sort(out.config.targets.begin(), out.config.targets.end());
    out.meta.base_model = j.value("base_model_name_or_path", "");
    if (j.contains("lowbit")) {
      const Json& l = j["lowbit"];
      out.meta.method = l.value("method", "");
      out.config.iec = l.value("iec", false);
      const std::string seed = l.value("seed", "0");
      size_t used = 0;
      out.config.seed = std::stoull(seed, &used);
      if (used != seed.size()) fail("lowbit.seed '{}' is not a decimal integer", seed);
      out.meta.base_fingerprint = l.value("base_fingerprint", "");
    }
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  } catch (const std::exception& e) {
    fail("{}: malformed adapter config: {}", path, e.what());
  }
  return out;
}

LoraSet load_adapter(const std::string& dir, const LlamaModel& model, const std::string& fingerprint) {
  const AdapterFile af = read_adapter_config(dir);
  const std::string wpath = dir + "/" + kWeights;
  if (!fingerprint.empty() && !af.meta.base_fingerprint.empty() && af.meta.base_fingerprint != fingerprint)
    fail("{}/{}: this adapter was trained on another base model (fingerprint {}…, this model's is {}…)", dir,
         kConfig, af.meta.base_fingerprint.substr(0, 12), fingerprint.substr(0, 12));
  if (!std::filesystem::exists(wpath)) fail("{}: no such file", wpath);
  const SafetensorsFile f = load_safetensors(wpath);
  LoraSet lora(model, af.config);
  std::map<std::string, bool> used;
  for (const auto& [name, _] : f.tensors) used[name] = false;
  auto read = [&](const std::string& name, std::vector<int64_t> shape, float* dst) {
    auto it = f.tensors.find(name);
    if (it == f.tensors.end()) fail("{}: missing tensor {}", wpath, name);
    const TensorView& t = it->second;
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
      fail("{}: tensor {} has dtype {}, expected F32, BF16 or F16", wpath, name, dtype_name(t.dtype));
    if (t.shape != shape)
      fail("{}: tensor {} has shape ({}), the model's linear implies ({})", wpath, name,
           fmt::join(t.shape, ", "), fmt::join(shape, ", "));
    to_f32(t.dtype, t.data, dst, size_t(t.numel()));
    used[name] = true;
  };
  for (auto& e : lora.entries()) {
    const std::string p = "base_model.model." + e.module;
    LoraAdapter& a = *e.adapter;
    read(p + ".lora_A.weight", {a.r, a.in}, a.A.data());
    read(p + ".lora_B.weight", {a.out, a.r}, a.B.data());
    if (a.iec) {
      read(p + ".lora_default_A_scale", {1}, &a.beta_a);
      read(p + ".lora_default_B_scale", {1}, &a.beta_b);
    }
  }
  for (const auto& [name, u] : used)
    if (!u) fail("{}: tensor {} belongs to no targeted linear of this model", wpath, name);
  return lora;
}

}  // namespace lowbit
