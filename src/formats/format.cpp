#include "formats/format.h"

#include "core/dtype.h"
#include "core/error.h"
#include "formats/affine.h"
#include "formats/billm.h"
#include "formats/dualbin.h"
#include "formats/nf4.h"
#include "formats/pbllm.h"
#include "formats/quip.h"
#include "formats/slim.h"

namespace lowbit {

TensorView format_tensor(DType dt, std::vector<int64_t> shape, const void* data) {
  TensorView t;
  t.dtype = dt;
  t.shape = std::move(shape);
  t.data = data;
  t.nbytes = size_t(t.numel()) * dtype_size(dt);
  return t;
}

void expect_tensor(const TensorView& t, const std::string& what, const char* suffix, DType dt,
                   const std::vector<int64_t>& shape) {
  if (t.dtype != dt || t.shape != shape)
    fail("{}.{} is {} {}, expected {} {}", what, suffix, dtype_name(t.dtype), shape_str(t.shape),
         dtype_name(dt), shape_str(shape));
}

const std::vector<const Format*>& packed_formats() {
  // One line per format.
  static const std::vector<const Format*> all = {&affine_format(), &nf4_format(),   &dualbin_format(),
                                                 &quip_format(),   &pbllm_format(), &billm_format(),
                                                 &slim_format()};
  return all;
}

const Format* find_format(std::string_view name) {
  for (const Format* f : packed_formats())
    if (f->name == name) return f;
  return nullptr;
}

}  // namespace lowbit
