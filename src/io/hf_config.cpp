#include "io/hf_config.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace lowbit {

namespace {

struct Reader {
  const Json& j;
  const std::string& path;

  const Json* find(const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  int positive_int(const Json& v, const char* key) const {
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > std::numeric_limits<int>::max())
      fail("{}: '{}' must be a positive integer, got {}", path, key, v.dump());
    return int(v.get<int64_t>());
  }
  int required_int(const char* key) const {
    const Json* v = find(key);
    if (!v) fail("{}: missing required key '{}'", path, key);
    return positive_int(*v, key);
  }
  int optional_int(const char* key, int def) const {
    const Json* v = find(key);
    return v ? positive_int(*v, key) : def;
  }
  double number(const Json& v, const char* key) const {
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      fail("{}: '{}' must be a finite number, got {}", path, key, v.dump());
    return v.get<double>();
  }
  double optional_positive(const Json* v, const char* key, double def) const {
    if (!v) return def;
    double d = number(*v, key);
    if (d <= 0) fail("{}: '{}' must be positive, got {}", path, key, v->dump());
    return d;
  }
  // bos/eos: an int or a list of ints (LLaMA-3.1 lists several EOS ids).
  std::vector<int> token_ids(const char* key) const {
    const Json* v = find(key);
    std::vector<int> out;
    if (!v) return out;
    auto one = [&](const Json& x) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > std::numeric_limits<int>::max())
        fail("{}: '{}' must be a token id or a list of token ids, got {}", path, key, v->dump());
      out.push_back(int(x.get<int64_t>()));
    };
    if (v->is_array()) {
      for (const Json& x : *v) one(x);
    } else {
      one(*v);
    }
    return out;
  }
};

// rope_scaling (or transformers >= 5 rope_parameters): null, {"rope_type"|"type": "default"}, or llama3's
// frequency-dependent scaling (Meta's LLaMA-3.1 release; transformers _compute_llama3_parameters).
RopeScaling parse_rope_scaling(const Json& s, const char* key, const std::string& path) {
  RopeScaling r;
  if (!s.is_object()) fail("{}: '{}' must be null or an object, got {}", path, key, s.dump());
  auto t = s.find("rope_type");
  if (t == s.end()) t = s.find("type");
  if (t == s.end() || t->is_null()) return r;
  if (!t->is_string()) fail("{}: '{}.rope_type' must be a string, got {}", path, key, t->dump());
  std::string type = t->get<std::string>();
  if (type == "default") return r;
  if (type != "llama3") fail("{}: {} type '{}' is not supported (only 'llama3' or none)", path, key, type);
  r.type = type;
  Reader rd{s, path};
  auto req = [&](const char* k) -> double {
    const Json* v = rd.find(k);
    if (!v) fail("{}: missing required key '{}.{}'", path, key, k);
    return rd.number(*v, k);
  };
  r.factor = req("factor");
  r.low_freq_factor = req("low_freq_factor");
  r.high_freq_factor = req("high_freq_factor");
  const Json* omax = rd.find("original_max_position_embeddings");
  if (!omax) fail("{}: missing required key '{}.original_max_position_embeddings'", path, key);
  r.original_max_position_embeddings = rd.positive_int(*omax, "original_max_position_embeddings");
  if (r.factor <= 0 || r.low_freq_factor <= 0 || r.high_freq_factor <= r.low_freq_factor)
    fail("{}: {} llama3 factors must satisfy factor > 0 and high_freq_factor > low_freq_factor > 0", path, key);
  return r;
}

}  // namespace

ModelConfig parse_hf_config(const Json& j, const std::string& path) {
  if (!j.is_object()) fail("{}: not a JSON object", path);
  Reader r{j, path};
  const Json* mt = r.find("model_type");
  if (!mt) fail("{}: missing required key 'model_type'", path);
  if (!mt->is_string() || mt->get<std::string>() != "llama")
    fail("{}: model_type {} is not supported (only \"llama\")", path, mt->dump());

  ModelConfig c;
  c.architecture = "llama";
  c.n_embd = r.required_int("hidden_size");
  c.n_layer = r.required_int("num_hidden_layers");
  c.n_head = r.required_int("num_attention_heads");
  c.n_kv_head = r.optional_int("num_key_value_heads", c.n_head);
  if (!r.find("head_dim") && c.n_embd % c.n_head != 0)
    fail("{}: hidden_size {} is not divisible by num_attention_heads {}", path, c.n_embd, c.n_head);
  c.head_dim = r.optional_int("head_dim", c.n_embd / c.n_head);
  if (c.n_head % c.n_kv_head != 0)
    fail("{}: num_attention_heads {} is not divisible by num_key_value_heads {}", path, c.n_head, c.n_kv_head);
  if (c.head_dim % 2 != 0) fail("{}: head_dim {} must be even for RoPE", path, c.head_dim);
  c.n_ff = r.required_int("intermediate_size");
  c.n_vocab = r.required_int("vocab_size");
  c.norm_eps = r.optional_positive(r.find("rms_norm_eps"), "rms_norm_eps", 1e-6);
  c.max_position_embeddings = r.optional_int("max_position_embeddings", 2048);

  const Json* params = r.find("rope_parameters");
  if (params && !params->is_object()) fail("{}: 'rope_parameters' must be an object, got {}", path, params->dump());
  const Json* theta = r.find("rope_theta");
  if (!theta && params) theta = Reader{*params, path}.find("rope_theta");
  c.rope_theta = r.optional_positive(theta, "rope_theta", 10000.0);
  if (const Json* s = r.find("rope_scaling")) {
    c.rope_scaling = parse_rope_scaling(*s, "rope_scaling", path);
  } else if (params) {
    c.rope_scaling = parse_rope_scaling(*params, "rope_parameters", path);
  }
  c.rope_style = RopeStyle::RotateHalf;

  if (const Json* t = r.find("tie_word_embeddings")) {
    if (!t->is_boolean()) fail("{}: 'tie_word_embeddings' must be true or false, got {}", path, t->dump());
    c.tie_word_embeddings = t->get<bool>();
  }
  std::vector<int> bos = r.token_ids("bos_token_id");
  if (bos.size() > 1) fail("{}: 'bos_token_id' must be a single id", path);
  c.bos_token_id = bos.empty() ? 1 : bos[0];
  c.eos_token_ids = r.token_ids("eos_token_id");
  if (c.eos_token_ids.empty() && !j.contains("eos_token_id")) c.eos_token_ids = {2};
  if (const Json* q = r.find("quantization_config")) c.quantization_config = *q;
  return c;
}

ModelConfig load_hf_config(const std::string& config_json_path) {
  return parse_hf_config(parse_json_file(config_json_path), config_json_path);
}

}  // namespace lowbit
