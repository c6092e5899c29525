#include "train/qlora.h"

#include "core/error.h"
#include "core/progress.h"
#include "quant/methods/nf4.h"
#include "train/peft.h"

namespace lowbit {

void check_finetune_method(const std::string& method) {
  if (method != "lora" && method != "qlora" && method != "ir-qlora")
    fail("fine-tuning method '{}' is not one of lora, qlora, ir-qlora", method);
}

bool method_uses_iec(const std::string& method) {
  return method == "ir-qlora";
}

void prepare_finetune_base(LlamaModel& model, const std::string& method, bool quiet) {
  check_finetune_method(method);
  if (method == "lora") return;
  Nf4Options o;
  o.double_quant = true;
  o.icq = method == "ir-qlora";
  const int L = model.config().n_layer;
  Progress bar(method == "ir-qlora" ? "NF4 + ICQ base" : "NF4 base", uint64_t(L), "layer", quiet);
  for (int l = 0; l < L; ++l) {
    for (LinearKind k : kAllLinears) {
      const Linear& cur = model.linear(l, k);
      const std::vector<float> w = linear_to_f32(cur);
      model.set_linear(l, k, packed_linear(quantize_nf4(w.data(), cur.rows(), cur.cols(), o)));
    }
    bar.add(1);
  }
  bar.finish();
}

void apply_adapter(LlamaModel& model, const std::string& dir, bool quiet) {
  const AdapterFile af = read_adapter_config(dir);
  const std::string method = af.meta.method.empty() ? "lora" : af.meta.method;
  LoraSet lora = load_adapter(dir, model, base_fingerprint(model.checkpoint()));
  prepare_finetune_base(model, method, quiet);
  attach_adapters(model, lora);
}

}  // namespace lowbit
