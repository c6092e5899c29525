// Facts every stored result carries: which lowbit build produced it, and when.
#pragma once
#include <string>

namespace lowbit {

std::string git_revision();  // the source revision at configure time ("unknown" outside a git checkout)
std::string utc_now_iso();   // e.g. "2026-11-25T19:40:02Z"

}  // namespace lowbit
