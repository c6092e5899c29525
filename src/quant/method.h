// The method registry: every quantization method lowbit knows, with its options, in one table that the CLI
// (`lowbit quantize --help`, its flags), validation, `quantization_config`, the study spec's keys and the
// report's labels all read. A new method is one file pair under quant/methods/ plus one line in
// quant/methods/registry.cpp (or one register_method() call, as the toy method of the tests does).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/json.h"

namespace lowbit {

struct QuantConfig;
struct QuantReport;
struct LayerReport;
class LlamaModel;
class Activations;
class Tokenizer;

enum class OptionType { Bool, Int, Number, String };

// One option of a method. `name` is the study-spec key and (unless config_key says otherwise) the key in
// quantization_config; the CLI flag is "--" + name with '_' written '-'.
struct MethodOption {
  std::string name;
  OptionType type = OptionType::Bool;
  Json def;  // default value (its JSON type matches `type`)
  std::string help;
  double min = -std::numeric_limits<double>::infinity();  // Int/Number: inclusive range
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;        // Number: > min instead of >= min
  std::vector<std::string> choices;  // String: allowed values (empty = any)
  std::string config_key;            // quantization_config key when not `name` (GPTQ's desc_act)
  bool max_exclusive = false;        // Number: < max instead of <= max (last: positional initializers)

  std::string flag() const;  // "--act-order"
  const std::string& json_key() const { return config_key.empty() ? name : config_key; }
};

// What a method's per-layer function gets: the model with layers < `layer` already quantized, the
// calibration activations entering `layer` (null for methods without calibration; the function leaves them
// as the inputs of the next layer), and the report to append one LinearReport per quantized linear to.
struct LayerJob {
  LlamaModel& model;
  int layer = 0;
  const QuantConfig& cfg;
  Activations* acts = nullptr;
  QuantReport& report;
  LayerReport& layer_report;
};

struct Method {
  std::string name;     // "gptq": the CLI's --method, the study spec's method, quantization_config
  std::string label;    // "GPTQ": the report's tables
  std::string summary;  // one line for --help and the report: "GPTQ (Frantar et al. 2022): ..."
  bool needs_calibration = false;
  int min_bits = 2, max_bits = 8;  // weight bits it supports
  std::string format;              // the storage format it writes (formats/format.h)
  // The one group size the method's format allows (NF4's blocks of 64 weights), or 0 for any. Where the group
  // is left out (the CLI's --group, a study row's group), the method gets this one instead of 128.
  int fixed_group = 0;
  // Otherwise, the groups its format takes: a multiple of group_multiple in [min_group, max_group] (0: no
  // rule; with a rule, per channel is not one of them). PB-LLM and BiLLM keep whole 32-bit words of a bit
  // plane per group.
  int group_multiple = 0, min_group = 0, max_group = 0;
  // The bits per weight its paper reports, where that is not wbits (PB-LLM counts (1 − r)·1 + r·8 for its
  // salient fraction r, and nothing for masks or scales). Null: wbits.
  double (*paper_bits)(const QuantConfig& cfg, const QuantReport& rep) = nullptr;
  std::vector<MethodOption> options;
  // Replaces the 7 linears of job.layer with packed weights of `format` (and may fold scales into norms).
  void (*quantize_layer)(LayerJob& job) = nullptr;
  // Tokens of each calibration window the method runs on (null: the whole window, cfg.seqlen).
  int (*calib_tokens)(const QuantConfig& cfg) = nullptr;
  // Instead of quantize_layer, for methods that train the whole model at once (DB-LLM's quantization-aware
  // distillation, train/dbllm.h): replaces every block linear with a packed weight of `format`, appending one
  // LinearReport per linear. Such methods live above this layer and register themselves (register_method).
  void (*quantize_model)(LlamaModel& model, const Tokenizer& tok, const QuantConfig& cfg,
                         QuantReport& rep) = nullptr;

  const MethodOption* option(const std::string& key) const;
};

// Every registered method, in registration order (the built-in ones first).
const std::vector<const Method*>& quant_method_list();
// The registered methods' names, in registration order.
std::vector<std::string> quant_methods();
// The method named `name`, or null.
const Method* find_method(const std::string& name);
// The method named `name`; throws "--method 'x' is not one of rtn, gptq, awq".
const Method& method_or_fail(const std::string& name);
// Adds a method (tests, plugins). The name must be new; `m` must outlive every use.
void register_method(const Method& m);

// Every option name that some method takes, once each, in registration order, with the methods taking it.
struct OptionUse {
  const MethodOption* option;  // the first method's declaration (help, type)
  std::vector<std::string> methods;
};
std::vector<OptionUse> all_method_options();

// The `options` of a config checked against the method's schema: unknown keys ("--act-order applies to gptq
// only, not awq"), wrong types, ranges. Missing options are filled with their defaults. Throws a one-line
// Error.
Json resolve_method_options(const Method& m, const Json& given);

// The option values shared by the affine methods (sym, mse): declared once, listed by each such method.
MethodOption sym_option();
MethodOption mse_option();

}  // namespace lowbit
