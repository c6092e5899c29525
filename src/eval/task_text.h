// Text helpers that reproduce the Python string semantics lm-evaluation-harness v0.3 relies on, on UTF-8
// bytes.
#pragma once
#include <string>
#include <string_view>

namespace lowbit {

// True when s is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s);

// Number of Unicode code points, i.e. Python's len(str). s must be valid UTF-8.
size_t utf8_length(std::string_view s);

// Python's str.isspace() for one code point (Unicode 15, as CPython 3.11): \t\n\v\f\r, \x1c-\x1f, space,
// U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool py_isspace(char32_t c);

// Python's str.strip() with no argument: drops leading and trailing code points for which isspace() holds.
std::string py_strip(std::string_view s);

// Python's str.replace(from, to): left to right, non-overlapping, a single pass ("   " -> "  " for "  " -> "
// ").
std::string py_replace(std::string_view s, std::string_view from, std::string_view to);

// Python's str.capitalize() for ASCII letters: first character upper-cased, the rest lower-cased. Non-ASCII
// characters are left as they are (CPython would change their case too; only the HellaSwag jsonl form uses
// this).
std::string py_capitalize_ascii(std::string_view s);

// lm-eval v0.3 HellaSwag.preprocess: strip; " [title]" -> ". "; re.sub("\\[.*?\\]", "", ...); "  " -> " "
// (once).
std::string hellaswag_preprocess(std::string_view text);

}  // namespace lowbit
