#include "core/json.h"

#include "core/error.h"
#include "core/mmap.h"

namespace lowbit {

Json parse_json_text(std::string_view text, const std::string& what) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..." : keep it on one
    // line. Not only parse_error: a number too large for a double ("1e999") throws out_of_range.406.
    std::string msg = e.what();
    auto pos = msg.find("] ");
    if (pos != std::string::npos) msg = msg.substr(pos + 2);
    fail("{}: malformed JSON: {}", what, msg);
  }
}

Json parse_json_file(const std::string& path) {
  return parse_json_text(read_file(path), path);
}

}  // namespace lowbit
