// The built-in methods, in the order --help and the study list them. A new method adds one line here.
#pragma once
#include <vector>

#include "quant/method.h"

namespace lowbit {

std::vector<const Method*> builtin_methods();

}  // namespace lowbit
