// safetensors (https://github.com/huggingface/safetensors, "Format" in its README): an 8-byte little-endian
// header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
// {str: str}}, then the data; offsets are relative to the first byte after the header.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "core/mmap.h"
#include "core/tensor.h"

namespace lowbit {

struct SafetensorsFile {
  std::string path;
  MappedFilePtr mapping;  // owns the bytes the views point into; null when parsed from caller-owned memory
  std::map<std::string, TensorView> tensors;
  std::map<std::string, std::string> metadata;
};

// Parses and validates a whole file image; views point into `data`, which the caller keeps alive. `name` is used
// in error messages and as TensorView::source. Throws Error (one line, naming `name`) on any malformed input.
SafetensorsFile parse_safetensors_bytes(const uint8_t* data, size_t size, const std::string& name);

// mmaps `path` and parses it; the result holds the mapping.
SafetensorsFile load_safetensors(const std::string& path);

// Writes tensors (any dtype; shape and nbytes must agree) and string metadata atomically (streamed to a temp
// file, fsync, rename). The header is padded with spaces so the data starts 8-byte aligned; tensors are stored
// contiguously (the official reader rejects gaps) in name order, except that those whose size is not a multiple
// of 8 bytes go last, so every other tensor starts 8-byte aligned.
void write_safetensors(const std::string& path, const std::map<std::string, TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lowbit
