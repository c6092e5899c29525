// GGUF, llama.cpp's model container (spec: ggml/docs/gguf.md). Layout: magic "GGUF", u32 version, tensor count,
// metadata count, metadata key/value pairs, tensor infos (name, n_dims, dims innermost-first, ggml type, offset
// relative to the data section), padding to general.alignment, tensor data. Version 1 stores counts, string
// lengths, array lengths and dims as u32; versions 2 and 3 as u64 (v3 only added big-endian files, which this
// reader rejects through the version check). Everything is validated against the file size before it is read.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap.h"
#include "core/tensor.h"
#include "io/checkpoint.h"

namespace lowbit {

enum class GgufType : uint32_t { U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };
std::string_view gguf_type_name(GgufType t);  // "u32", "string", ...

struct GgufValue {
  GgufType type = GgufType::U8;
  uint64_t bits = 0;  // integers and bool; signed ones sign-extended (read as int64_t)
  double f = 0;       // F32, F64
  std::string str;    // STRING
  GgufType elem_type = GgufType::U8;  // ARRAY
  std::vector<GgufValue> array;       // ARRAY (elements may be arrays themselves)

  bool is_integer() const;
  bool is_signed() const { return type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64; }
  std::string summary() const;  // for dumps: value, or "[u32 x 512]"
};

// ggml tensor types: the ones whose size this reader knows (all llama.cpp has shipped), for listing and range
// checks. Only F32, F16 and BF16 can be loaded as TensorViews.
struct GgmlTypeInfo {
  std::string_view name;
  uint32_t block_size;  // elements per block
  uint32_t type_size;   // bytes per block
};
const GgmlTypeInfo* ggml_type_info(uint32_t type);  // null for unknown types
std::string ggml_type_name(uint32_t type);          // "Q4_K", or "type 99"

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] is the innermost (contiguous) dimension
  uint32_t type = 0;           // ggml type
  uint64_t offset = 0;         // relative to the data section
  uint64_t file_offset = 0;    // absolute
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // mmaps the file
  // Parses caller-owned memory (kept alive by the caller for as long as this object and its views are used).
  GgufFile(const uint8_t* data, size_t size, const std::string& name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const MappedFilePtr& mapping() const { return mapping_; }  // null for caller-owned memory
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const;
  // Typed getters: throw "<file>: metadata key '<key>' is missing" / "... has type string, expected u32". Integer
  // getters accept any integer type whose value fits; get_f32 accepts f32 and f64.
  uint32_t get_u32(const std::string& key) const;
  int32_t get_i32(const std::string& key) const;
  uint64_t get_u64(const std::string& key) const;
  float get_f32(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const GgufValue& get_array(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;
  std::vector<int32_t> get_i32_array(const std::string& key) const;

  // A view of an F32/F16/BF16 tensor with dims reversed into PyTorch order (outermost first). Other types throw
  // "<file>: tensor '<name>' has ggml type Q4_K, only F32, F16 and BF16 can be loaded".
  TensorView tensor_view(const GgufTensorInfo& t) const;

 private:
  void parse();
  const GgufValue& get(const std::string& key) const;  // throws when missing

  std::string name_;
  MappedFilePtr mapping_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

// A llama-architecture GGUF as a Checkpoint with canonical HF names (token_embd.weight ->
// model.embed_tokens.weight, blk.N.attn_q.weight -> model.layers.N.self_attn.q_proj.weight, ...), dims in
// PyTorch order, views into the mmap. rope_style is Interleaved: llama.cpp's convert_hf_to_gguf.py permutes
// the q/k rows of HF checkpoints back into Meta's original layout (LlamaModel.permute), and files converted from
// Meta/llama2.c checkpoints are in that layout already, so RoPE pairs adjacent dims (x[2i], x[2i+1]) as stored.
Checkpoint load_gguf_checkpoint(const std::string& path);

}  // namespace lowbit
