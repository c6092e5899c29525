// Builders for small checkpoint files and an error matcher, shared by the io tests.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/error.h"

namespace lowbit::test {

// Runs f; passes when it throws lowbit::Error whose message is one line containing every needle.
inline ::testing::AssertionResult throws_error(const std::function<void()>& f,
                                               std::initializer_list<std::string> needles) {
  try {
    f();
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.find('\n') != std::string::npos) return ::testing::AssertionFailure() << "multi-line error: " << m;
    for (const auto& n : needles)
      if (m.find(n) == std::string::npos)
        return ::testing::AssertionFailure() << "'" << n << "' not in: " << m;
    return ::testing::AssertionSuccess() << m;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "non-lowbit exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "no error thrown";
}

template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A safetensors file from a literal header text and data bytes.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string s;
  put<uint64_t>(s, header.size());
  return s + header + data;
}

// A GGUF file of the given version, written field by field as the spec lays it out.
class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version = 3) : version_(version) {}

  std::string str(const std::string& s) const {
    std::string o;
    count(o, s.size());
    return o + s;
  }
  void count(std::string& o, uint64_t n) const {
    if (version_ == 1)
      put<uint32_t>(o, uint32_t(n));
    else
      put<uint64_t>(o, n);
  }
  // A key with a raw value (type id + payload already encoded).
  void kv_raw(const std::string& key, uint32_t type, const std::string& payload) {
    std::string e = str(key);
    put<uint32_t>(e, type);
    kv_ += e + payload;
    ++n_kv_;
  }
  void kv_u32(const std::string& key, uint32_t v) { kv_raw(key, 4, pod(v)); }
  void kv_i32(const std::string& key, int32_t v) { kv_raw(key, 5, pod(v)); }
  void kv_f32(const std::string& key, float v) { kv_raw(key, 6, pod(v)); }
  void kv_bool(const std::string& key, bool v) { kv_raw(key, 7, pod(uint8_t(v))); }
  void kv_string(const std::string& key, const std::string& v) { kv_raw(key, 8, str(v)); }
  std::string array_header(uint32_t elem_type, uint64_t n) const {
    std::string o = pod(elem_type);
    count(o, n);
    return o;
  }
  void kv_strings(const std::string& key, const std::vector<std::string>& v) {
    std::string p = array_header(8, v.size());
    for (const auto& s : v) p += str(s);
    kv_raw(key, 9, p);
  }
  void kv_f32s(const std::string& key, const std::vector<float>& v) {
    kv_raw(key, 9, array_header(6, v.size()) + bytes_of(v));
  }
  void kv_i32s(const std::string& key, const std::vector<int32_t>& v) {
    kv_raw(key, 9, array_header(5, v.size()) + bytes_of(v));
  }
  // dims in GGUF order (innermost first); data must already be the right size and will be aligned.
  void tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, const std::string& data) {
    tensors_.push_back({name, dims, type, data});
  }
  std::string build(uint64_t alignment = 32) const {
    std::string o = "GGUF";
    put<uint32_t>(o, version_);
    count(o, tensors_.size());
    count(o, n_kv_);
    o += kv_;
    uint64_t off = 0;
    std::vector<uint64_t> offs;
    for (const auto& t : tensors_) {
      o += str(t.name);
      put<uint32_t>(o, uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) count(o, d);
      put<uint32_t>(o, t.type);
      put<uint64_t>(o, off);
      offs.push_back(off);
      off = (off + t.data.size() + alignment - 1) / alignment * alignment;
    }
    o.append((alignment - o.size() % alignment) % alignment, '\0');
    size_t base = o.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      o.resize(base + offs[i], '\0');
      o += tensors_[i].data;
    }
    return o;
  }

  template <typename T>
  static std::string pod(T v) {
    std::string s;
    put(s, v);
    return s;
  }

 private:
  struct T {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::string data;
  };
  uint32_t version_;
  uint64_t n_kv_ = 0;
  std::string kv_;
  std::vector<T> tensors_;
};

}  // namespace lowbit::test
