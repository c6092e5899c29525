#include "core/json.h"

#include "core/error.h"
#include "core/mmap.h"

namespace lowbit {

Json parse_json_text(std::string_view text, const std::string& what) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // parse_error, or out_of_range for a number like 1e999. e.what() is
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." : keep it on one line.
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
