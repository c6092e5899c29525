#include "quant/method.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/methods/registry.h"

namespace lowbit {

std::string MethodOption::flag() const {
  std::string f = "--" + name;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

const MethodOption* Method::option(const std::string& key) const {
  for (const MethodOption& o : options)
    if (o.name == key) return &o;
  return nullptr;
}

namespace {

std::vector<const Method*>& registry() {
  static std::vector<const Method*> r = builtin_methods();
  return r;
}

// The value of option o in `v`, checked: its JSON type and range. Int accepts a whole-valued number.
Json check_value(const Method& m, const MethodOption& o, const Json& v) {
  auto bad = [&](const std::string& what) -> Json { fail("{} {}: {}", o.flag(), v.dump(), what); };
  switch (o.type) {
    case OptionType::Bool:
      if (!v.is_boolean()) return bad("expected true or false");
      return v;
    case OptionType::String: {
      if (!v.is_string()) return bad("expected a string");
      const std::string s = v.get<std::string>();
      if (!o.choices.empty() && std::find(o.choices.begin(), o.choices.end(), s) == o.choices.end())
        fail("{} '{}' is not one of {}", o.flag(), s, fmt::join(o.choices, ", "));
      return v;
    }
    case OptionType::Int:
    case OptionType::Number: {
      if (!v.is_number()) return bad(o.type == OptionType::Int ? "expected an integer" : "expected a number");
      const double x = v.get<double>();
      if (o.type == OptionType::Int && (!v.is_number_integer() && x != std::floor(x)))
        return bad("expected an integer");
      const bool below = o.min_exclusive ? !(x > o.min) : !(x >= o.min);
      const bool above = o.max_exclusive ? !(x < o.max) : !(x <= o.max);
      if (!std::isfinite(x) || below || above) {
        std::string range;
        if (std::isfinite(o.min) && std::isfinite(o.max))
          range = fmt::format("in {}{}, {}{}", o.min_exclusive ? "(" : "[", o.min, o.max,
                              o.max_exclusive ? ")" : "]");
        else if (std::isfinite(o.min))
          range = fmt::format("{} {}", o.min_exclusive ? ">" : ">=", o.min);
        else
          range = fmt::format("{} {}", o.max_exclusive ? "<" : "<=", o.max);
        return bad(fmt::format("{} takes a value {} ({})", m.name, range, o.help));
      }
      if (o.type == OptionType::Int) return Json(int64_t(x));
      return Json(x);
    }
  }
  return v;
}

}  // namespace

const std::vector<const Method*>& quant_method_list() {
  return registry();
}

std::vector<std::string> quant_methods() {
  std::vector<std::string> n;
  for (const Method* m : registry()) n.push_back(m->name);
  return n;
}

const Method* find_method(const std::string& name) {
  for (const Method* m : registry())
    if (m->name == name) return m;
  return nullptr;
}

const Method& method_or_fail(const std::string& name) {
  const Method* m = find_method(name);
  if (!m) fail("--method '{}' is not one of {}", name, fmt::join(quant_methods(), ", "));
  return *m;
}

void register_method(const Method& m) {
  if (find_method(m.name)) fail("method '{}' is registered twice", m.name);
  if (!m.quantize_layer == !m.quantize_model)
    fail("method '{}' needs exactly one of quantize_layer and quantize_model", m.name);
  registry().push_back(&m);
}

std::vector<OptionUse> all_method_options() {
  std::vector<OptionUse> out;
  for (const Method* m : registry())
    for (const MethodOption& o : m->options) {
      auto it =
          std::find_if(out.begin(), out.end(), [&](const OptionUse& u) { return u.option->name == o.name; });
      if (it == out.end()) it = out.insert(out.end(), OptionUse{&o, {}});
      it->methods.push_back(m->name);
    }
  return out;
}

Json resolve_method_options(const Method& m, const Json& given) {
  if (!given.is_null() && !given.is_object()) fail("method options must be a table of name = value");
  Json out = Json::object();
  if (given.is_object())
    for (auto& [k, v] : given.items()) {
      const MethodOption* o = m.option(k);
      if (!o) {
        std::vector<std::string> takers;
        for (const OptionUse& u : all_method_options())
          if (u.option->name == k) takers = u.methods;
        if (takers.empty()) fail("option '{}' is not an option of any method", k);
        MethodOption named;
        named.name = k;
        fail("{} applies to {} only, not {}", named.flag(), fmt::join(takers, ", "), m.name);
      }
      out[k] = check_value(m, *o, v);
    }
  for (const MethodOption& o : m.options)
    if (!out.contains(o.name)) out[o.name] = o.def;
  return out;
}

MethodOption sym_option() {
  return {"sym", OptionType::Bool, false, "symmetric quantization (default asymmetric)"};
}

MethodOption mse_option() {
  return {"mse", OptionType::Bool, false, "MSE shrink search for the quantization range (GPTQ's --mse)"};
}

}  // namespace lowbit
