// JSON files with errors that name the file (nlohmann's own messages do not).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lowbit {

using Json = nlohmann::json;

Json parse_json_file(const std::string& path);
Json parse_json_text(std::string_view text, const std::string& what);  // `what` names the source in errors

}  // namespace lowbit
