// SHA-256 (FIPS 180-4), for provenance of data files and token streams.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace lowbit {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::array<uint8_t, 32> digest();  // finalises; call once
  std::string hex();                 // finalises; call once

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t n);
std::string sha256_file(const std::string& path);

}  // namespace lowbit
