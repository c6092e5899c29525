#include "formats/format.h"

#include "formats/affine.h"
#include "formats/dualbin.h"
#include "formats/nf4.h"
#include "formats/quip.h"

namespace lowbit {

const std::vector<const Format*>& packed_formats() {
  // One line per format.
  static const std::vector<const Format*> all = {&affine_format(), &nf4_format(), &dualbin_format(),
                                                 &quip_format()};
  return all;
}

const Format* find_format(std::string_view name) {
  for (const Format* f : packed_formats())
    if (f->name == name) return f;
  return nullptr;
}

}  // namespace lowbit
