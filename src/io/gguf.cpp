#include "io/gguf.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>
#include <set>

#include "core/error.h"
#include "io/byte_reader.h"

namespace lowbit {

namespace {

constexpr int kMaxArrayDepth = 8;  // nested arrays deeper than this are not something llama.cpp writes
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS

constexpr std::string_view kTypeNames[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                           "bool", "string", "array", "u64", "i64", "f64"};

// Sizes from ggml's type_traits (ggml.c / ggml-common.h block structs). Types 4, 5 (Q4_2/Q4_3) and 31-33,
// 36-38 (repacked Q4_0/IQ4_NL variants) were removed from ggml and never appear in files.
struct TypeEntry {
  uint32_t id;
  GgmlTypeInfo info;
};
constexpr TypeEntry kGgmlTypes[] = {
    {0, {"F32", 1, 4}},        {1, {"F16", 1, 2}},        {2, {"Q4_0", 32, 18}},     {3, {"Q4_1", 32, 20}},
    {6, {"Q5_0", 32, 22}},     {7, {"Q5_1", 32, 24}},     {8, {"Q8_0", 32, 34}},     {9, {"Q8_1", 32, 36}},
    {10, {"Q2_K", 256, 84}},   {11, {"Q3_K", 256, 110}},  {12, {"Q4_K", 256, 144}},  {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},  {15, {"Q8_K", 256, 292}},  {16, {"IQ2_XXS", 256, 66}}, {17, {"IQ2_XS", 256, 74}},
    {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}}, {20, {"IQ4_NL", 32, 18}},  {21, {"IQ3_S", 256, 110}},
    {22, {"IQ2_S", 256, 82}},  {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},       {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},       {27, {"I64", 1, 8}},       {28, {"F64", 1, 8}},       {29, {"IQ1_M", 256, 56}},
    {30, {"BF16", 1, 2}},      {34, {"TQ1_0", 256, 54}},  {35, {"TQ2_0", 256, 66}},  {39, {"MXFP4", 32, 17}},
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

class Parser {
 public:
  Parser(const uint8_t* data, size_t size, const std::string& name, uint32_t version)
      : r(data, size, name), name(name), len_size(version == 1 ? 4 : 8) {}

  ByteReader r;
  const std::string& name;
  uint64_t len_size;  // bytes of a count / string length: 4 in v1, 8 in v2+

  uint64_t count(std::string_view what) {
    return len_size == 4 ? r.read<uint32_t>(what) : r.read<uint64_t>(what);
  }
  std::string string(std::string_view what) {
    uint64_t n = count(what);
    return std::string(r.read_bytes(n, what));
  }

  // The smallest number of bytes an array element of type t can take.
  uint64_t min_size(GgufType t) const {
    if (t == GgufType::STRING) return len_size;
    if (t == GgufType::ARRAY) return 4 + len_size;
    return scalar_size(t);
  }

  GgufType value_type(uint32_t t, const std::string& key) {
    if (t > uint32_t(GgufType::F64)) fail("{}: metadata key '{}' has invalid value type {}", name, key, t);
    return GgufType(t);
  }

  GgufValue value(GgufType t, const std::string& key, int depth) {
    GgufValue v;
    v.type = t;
    switch (t) {
      case GgufType::U8: v.bits = r.read<uint8_t>(key); break;
      case GgufType::I8: v.bits = uint64_t(int64_t(r.read<int8_t>(key))); break;
      case GgufType::U16: v.bits = r.read<uint16_t>(key); break;
      case GgufType::I16: v.bits = uint64_t(int64_t(r.read<int16_t>(key))); break;
      case GgufType::U32: v.bits = r.read<uint32_t>(key); break;
      case GgufType::I32: v.bits = uint64_t(int64_t(r.read<int32_t>(key))); break;
      case GgufType::U64: v.bits = r.read<uint64_t>(key); break;
      case GgufType::I64: v.bits = uint64_t(r.read<int64_t>(key)); break;
      case GgufType::BOOL: v.bits = r.read<uint8_t>(key) != 0; break;
      case GgufType::F32: v.f = r.read<float>(key); break;
      case GgufType::F64: v.f = r.read<double>(key); break;
      case GgufType::STRING: v.str = string(key); break;
      case GgufType::ARRAY: {
        if (depth >= kMaxArrayDepth)
          fail("{}: metadata key '{}': arrays nested deeper than {}", name, key, kMaxArrayDepth);
        v.elem_type = value_type(r.read<uint32_t>(key), key);
        uint64_t n = count(key), need;
        if (!mul_ok(n, min_size(v.elem_type), &need) || need > r.remaining())
          fail("{}: metadata key '{}': array of {} {} cannot fit in the {} bytes left", name, key, n,
               gguf_type_name(v.elem_type), r.remaining());
        v.array.reserve(size_t(n));
        for (uint64_t i = 0; i < n; ++i) v.array.push_back(value(v.elem_type, key, depth + 1));
        break;
      }
    }
    return v;
  }
};

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  return uint32_t(t) < std::size(kTypeNames) ? kTypeNames[uint32_t(t)] : "invalid";
}

bool GgufValue::is_integer() const {
  return type != GgufType::F32 && type != GgufType::F64 && type != GgufType::STRING && type != GgufType::ARRAY &&
         type != GgufType::BOOL;
}

std::string GgufValue::summary() const {
  switch (type) {
    case GgufType::STRING: return fmt::format("\"{}\"", str);
    case GgufType::ARRAY: return fmt::format("[{} x {}]", gguf_type_name(elem_type), array.size());
    case GgufType::F32: case GgufType::F64: return fmt::format("{}", f);
    case GgufType::BOOL: return bits ? "true" : "false";
    default: return is_signed() ? fmt::format("{}", int64_t(bits)) : fmt::format("{}", bits);
  }
}

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  for (const auto& e : kGgmlTypes)
    if (e.id == type) return &e.info;
  return nullptr;
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeInfo* i = ggml_type_info(type);
  return i ? std::string(i->name) : fmt::format("type {}", type);
}

GgufFile::GgufFile(const std::string& path) : name_(path) {
  mapping_ = std::make_shared<const MappedFile>(path);
  data_ = mapping_->data();
  size_ = mapping_->size();
  parse();
}

GgufFile::GgufFile(const uint8_t* data, size_t size, const std::string& name) : name_(name), data_(data), size_(size) {
  parse();
}

void GgufFile::parse() {
  if (size_ < 4 || std::memcmp(data_, "GGUF", 4) != 0) fail("{}: not a GGUF file (no \"GGUF\" magic)", name_);
  {
    ByteReader hr(data_, size_, name_);
    hr.seek(4, "version");
    version_ = hr.read<uint32_t>("version");
  }
  if (version_ < 1 || version_ > 3)
    fail("{}: unsupported GGUF version {} (expected 1, 2 or 3; big-endian files are not supported)", name_,
         version_);
  Parser p(data_, size_, name_, version_);
  p.r.seek(8, "tensor count");
  uint64_t n_tensors = p.count("tensor count");
  uint64_t n_kv = p.count("metadata count");
  uint64_t kv_min, ti_min, total;
  if (!mul_ok(n_kv, p.len_size + 4 + 1, &kv_min) || !mul_ok(n_tensors, p.len_size + 16, &ti_min) ||
      !add_ok(kv_min, ti_min, &total) || total > p.r.remaining())
    fail("{}: {} metadata entries and {} tensor infos cannot fit in the {} bytes left", name_, n_kv, n_tensors,
         p.r.remaining());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = p.string("metadata key");
    GgufType t = p.value_type(p.r.read<uint32_t>(key), key);
    GgufValue v = p.value(t, key, 0);
    if (!kv_.emplace(key, std::move(v)).second) fail("{}: duplicate metadata key '{}'", name_, key);
  }
  if (has("general.alignment")) {
    uint32_t a = get_u32("general.alignment");
    if (a == 0 || (a & (a - 1)) != 0) fail("{}: general.alignment {} is not a power of two", name_, a);
    alignment_ = a;
  }

  tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = p.string("tensor name");
    uint32_t nd = p.r.read<uint32_t>(t.name);
    if (nd == 0 || nd > kMaxDims) fail("{}: tensor '{}' has {} dimensions (expected 1 to {})", name_, t.name, nd, kMaxDims);
    for (uint32_t d = 0; d < nd; ++d) t.dims.push_back(p.count(t.name));
    t.type = p.r.read<uint32_t>(t.name);
    t.offset = p.r.read<uint64_t>(t.name);
    tensors_.push_back(std::move(t));
  }
  std::set<std::string_view> seen;
  for (const auto& t : tensors_)
    if (!seen.insert(t.name).second) fail("{}: duplicate tensor '{}'", name_, t.name);

  uint64_t data_start;
  if (!add_ok(p.r.pos(), alignment_ - 1, &data_start)) fail("{}: data offset overflows", name_);
  data_start &= ~(alignment_ - 1);
  for (GgufTensorInfo& t : tensors_) {
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti) fail("{}: tensor '{}' has unknown ggml type {}", name_, t.name, t.type);
    uint64_t numel = 1;
    for (uint64_t d : t.dims)
      if (!mul_ok(numel, d, &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max()))
        fail("{}: tensor '{}': element count overflows", name_, t.name);
    if (t.dims[0] % ti->block_size != 0)
      fail("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", name_, t.name, t.dims[0],
           ti->name, ti->block_size);
    if (!mul_ok(numel / ti->block_size, ti->type_size, &t.nbytes))
      fail("{}: tensor '{}': byte size overflows", name_, t.name);
    if (t.offset % alignment_ != 0)
      fail("{}: tensor '{}': offset {} is not a multiple of the alignment {}", name_, t.name, t.offset, alignment_);
    uint64_t end;
    if (!add_ok(data_start, t.offset, &t.file_offset) || !add_ok(t.file_offset, t.nbytes, &end) || end > size_)
      fail("{}: tensor '{}': data [{} + {}, +{} bytes) extends past the end of the file ({} bytes)", name_, t.name,
           data_start, t.offset, t.nbytes, size_);
  }
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata key '{}' is missing", name_, key);
  return *v;
}

namespace {
[[noreturn]] void wrong_type(const std::string& file, const std::string& key, const GgufValue& v,
                             std::string_view expected) {
  fail("{}: metadata key '{}' has type {}, expected {}", file, key, gguf_type_name(v.type), expected);
}
// Integer metadata as a value in [lo, hi]; any integer type is accepted (writers disagree on u32 vs i32/u64).
template <typename T>
T get_int(const std::string& file, const std::string& key, const GgufValue& v, std::string_view expected) {
  if (!v.is_integer()) wrong_type(file, key, v, expected);
  bool ok = v.is_signed() ? (int64_t(v.bits) >= int64_t(std::numeric_limits<T>::min()) &&
                             (int64_t(v.bits) < 0 || uint64_t(v.bits) <= uint64_t(std::numeric_limits<T>::max())))
                          : v.bits <= uint64_t(std::numeric_limits<T>::max());
  if (!ok) fail("{}: metadata key '{}' value {} does not fit in {}", file, key, v.summary(), expected);
  return T(v.is_signed() ? int64_t(v.bits) : int64_t(v.bits));
}
}  // namespace

uint32_t GgufFile::get_u32(const std::string& key) const { return get_int<uint32_t>(name_, key, get(key), "u32"); }
int32_t GgufFile::get_i32(const std::string& key) const { return get_int<int32_t>(name_, key, get(key), "i32"); }
uint64_t GgufFile::get_u64(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!v.is_integer()) wrong_type(name_, key, v, "u64");
  if (v.is_signed() && int64_t(v.bits) < 0) fail("{}: metadata key '{}' value {} is negative", name_, key, v.summary());
  return v.bits;
}
float GgufFile::get_f32(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::F32 && v.type != GgufType::F64) wrong_type(name_, key, v, "f32");
  return float(v.f);
}
bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::BOOL) wrong_type(name_, key, v, "bool");
  return v.bits != 0;
}
const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::STRING) wrong_type(name_, key, v, "string");
  return v.str;
}
const GgufValue& GgufFile::get_array(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::ARRAY) wrong_type(name_, key, v, "array");
  return v;
}
std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& a = get_array(key);
  if (a.elem_type != GgufType::STRING)
    fail("{}: metadata key '{}' is an array of {}, expected string", name_, key, gguf_type_name(a.elem_type));
  std::vector<std::string> out;
  out.reserve(a.array.size());
  for (const auto& e : a.array) out.push_back(e.str);
  return out;
}
std::vector<float> GgufFile::get_f32_array(const std::string& key) const {
  const GgufValue& a = get_array(key);
  if (a.elem_type != GgufType::F32 && a.elem_type != GgufType::F64)
    fail("{}: metadata key '{}' is an array of {}, expected f32", name_, key, gguf_type_name(a.elem_type));
  std::vector<float> out;
  out.reserve(a.array.size());
  for (const auto& e : a.array) out.push_back(float(e.f));
  return out;
}
std::vector<int32_t> GgufFile::get_i32_array(const std::string& key) const {
  const GgufValue& a = get_array(key);
  std::vector<int32_t> out;
  out.reserve(a.array.size());
  for (const auto& e : a.array) out.push_back(get_int<int32_t>(name_, key, e, "i32 array element"));
  return out;
}

TensorView GgufFile::tensor_view(const GgufTensorInfo& t) const {
  TensorView v;
  switch (t.type) {
    case 0: v.dtype = DType::F32; break;
    case 1: v.dtype = DType::F16; break;
    case 30: v.dtype = DType::BF16; break;
    default:
      fail("{}: tensor '{}' has ggml type {}, only F32, F16 and BF16 can be loaded", name_, t.name,
           ggml_type_name(t.type));
  }
  for (size_t i = t.dims.size(); i-- > 0;) v.shape.push_back(int64_t(t.dims[i]));  // innermost-first -> PyTorch
  v.data = data_ + t.file_offset;
  v.nbytes = size_t(t.nbytes);
  v.source = name_;
  return v;
}

}  // namespace lowbit
