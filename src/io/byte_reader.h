// Bounds-checked little-endian reads from an in-memory file image, and overflow-checked size arithmetic.
// Every binary reader in io/ goes through these so that no offset or length from a file is trusted.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "core/error.h"

namespace lowbit {

// a * b and a + b on sizes from untrusted headers: false on overflow.
inline bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool add_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& name() const { return name_; }

  // `what` describes the field for the error message ("tensor count", "key string", ...).
  void need(uint64_t n, std::string_view what) const {
    if (n > remaining())
      fail("{}: truncated: {} needs {} bytes at offset {}, file has {}", name_, what, n, pos_, size_);
  }
  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_bytes(uint64_t n, std::string_view what) {
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  void seek(uint64_t p, std::string_view what) {
    if (p > size_) fail("{}: truncated: {} at offset {} is past the end of the file ({} bytes)", name_, what, p, size_);
    pos_ = size_t(p);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string name_;
};

}  // namespace lowbit
