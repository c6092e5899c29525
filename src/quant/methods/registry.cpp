#include "quant/methods/registry.h"

#include "quant/methods/awq.h"
#include "quant/methods/billm.h"
#include "quant/methods/gptq.h"
#include "quant/methods/nf4.h"
#include "quant/methods/pbllm.h"
#include "quant/methods/quip.h"
#include "quant/methods/rtn.h"
#include "quant/methods/slim.h"

namespace lowbit {

std::vector<const Method*> builtin_methods() {
  return {&rtn_method(),  &gptq_method(),  &awq_method(),   &nf4_method(),
          &quip_method(), &pbllm_method(), &billm_method(), &slim_method()};
}

}  // namespace lowbit
