#include "formats/gptq_layout.h"

#include <algorithm>
#include <memory>

#include "core/error.h"

namespace lowbit {
namespace {

bool gptq_bits(int b) {
  return b == 2 || b == 3 || b == 4 || b == 8;
}

// Number of int32 words holding `count` codes of `bits` bits, or −1 if they do not fill whole words.
int64_t words_for(int64_t count, int bits) {
  const int64_t total = count * bits;  // count is bounded by the caller (< 2^40), no overflow
  return total % 32 == 0 ? total / 32 : -1;
}

uint32_t le_word(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
void put_le_word(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v), p[1] = uint8_t(v >> 8), p[2] = uint8_t(v >> 16), p[3] = uint8_t(v >> 24);
}

bool finite_f16(uint16_t h) {
  return (h & 0x7C00) != 0x7C00;
}

struct Storage {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;
};

}  // namespace

GptqTensors to_gptq(const AffineWeight& w, GptqZeros zeros) {
  check_affine_weight(w, "to_gptq");
  if (!gptq_bits(w.bits)) fail("to_gptq: {}-bit weights have no GPTQ layout (2, 3, 4, 8)", w.bits);
  const int64_t I = w.cols, O = w.rows, G = w.n_groups();
  const int64_t kw = words_for(I, w.bits), zw = words_for(O, w.bits);
  if (kw < 0) fail("to_gptq: {} input features do not pack into whole int32 words at {} bits", I, w.bits);
  if (zw < 0) fail("to_gptq: {} output features do not pack into whole int32 words at {} bits", O, w.bits);
  GptqTensors t;
  t.bits = w.bits, t.in_features = I, t.out_features = O, t.group_size = w.group_size;

  // Our row o is the bitstream of column o of qweight; row_bytes() == 4·kw exactly.
  t.qweight.resize(size_t(kw * O));
  for (int64_t o = 0; o < O; ++o) {
    const uint8_t* row = w.codes + size_t(o) * w.row_bytes();
    for (int64_t k = 0; k < kw; ++k) t.qweight[size_t(k * O + o)] = int32_t(le_word(row + 4 * k));
  }

  const uint32_t maxq = (1u << w.bits) - 1;
  t.qzeros.resize(size_t(G * zw));
  std::vector<uint8_t> stream(size_t(zw) * 4);
  for (int64_t g = 0; g < G; ++g) {
    std::fill(stream.begin(), stream.end(), 0);
    for (int64_t o = 0; o < O; ++o) {
      const uint32_t z = w.zeros[o * G + g];
      uint32_t stored = z;
      if (zeros == GptqZeros::kMinusOne) {
        if (z == 0 || z > maxq + 1)
          fail(
              "to_gptq: zero-point {} (row {}, group {}) cannot be stored as GPTQ v1 zero-minus-one at {} "
              "bits",
              z, o, g, w.bits);
        stored = z - 1;
      } else if (z > maxq) {
        fail("to_gptq: zero-point {} (row {}, group {}) does not fit in {} bits", z, o, g, w.bits);
      }
      pack_code(stream.data(), w.bits, o, stored);
    }
    for (int64_t k = 0; k < zw; ++k) t.qzeros[size_t(g * zw + k)] = int32_t(le_word(stream.data() + 4 * k));
  }

  t.scales.resize(size_t(G * O));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t g = 0; g < G; ++g) t.scales[size_t(g * O + o)] = w.scales[o * G + g];

  t.g_idx.resize(size_t(I));
  for (int64_t i = 0; i < I; ++i) t.g_idx[size_t(i)] = int32_t(w.group_of(i));
  return t;
}

AffineWeight from_gptq(const GptqView& t, GptqZeros zeros, std::string_view what) {
  if (!gptq_bits(t.bits)) fail("{}: unsupported GPTQ bit width {} (2, 3, 4, 8)", what, t.bits);
  constexpr int64_t kMaxFeatures = int64_t(1) << 24;  // far above any real layer; keeps size products < 2^62
  const int64_t I = t.in_features, O = t.out_features;
  if (I <= 0 || O <= 0 || I > kMaxFeatures || O > kMaxFeatures)
    fail("{}: bad shape: in_features {}, out_features {}", what, I, O);
  const int64_t gs = t.group_size == -1 ? I : t.group_size;
  if (gs <= 0 || I % gs != 0) fail("{}: group size {} does not divide in_features {}", what, t.group_size, I);
  const int64_t G = I / gs;
  const int64_t kw = words_for(I, t.bits), zw = words_for(O, t.bits);
  if (kw < 0) fail("{}: in_features {} does not pack into whole int32 words at {} bits", what, I, t.bits);
  if (zw < 0) fail("{}: out_features {} does not pack into whole int32 words at {} bits", what, O, t.bits);
  if (t.qweight.size() != size_t(kw * O))
    fail("{}: qweight has {} elements, expected {} x {}", what, t.qweight.size(), kw, O);
  if (t.qzeros.size() != size_t(G * zw))
    fail("{}: qzeros has {} elements, expected {} x {}", what, t.qzeros.size(), G, zw);
  if (t.scales.size() != size_t(G * O))
    fail("{}: scales has {} elements, expected {} x {}", what, t.scales.size(), G, O);
  if (!t.g_idx.empty() && t.g_idx.size() != size_t(I))
    fail("{}: g_idx has {} elements, expected {}", what, t.g_idx.size(), I);

  auto st = std::make_shared<Storage>();
  AffineWeight w;
  w.bits = t.bits, w.rows = O, w.cols = I, w.group_size = gs;

  st->codes.resize(w.row_bytes() * size_t(O));
  for (int64_t o = 0; o < O; ++o) {
    uint8_t* row = st->codes.data() + size_t(o) * w.row_bytes();
    for (int64_t k = 0; k < kw; ++k) put_le_word(row + 4 * k, uint32_t(t.qweight[size_t(k * O + o)]));
  }

  st->zeros.resize(size_t(O * G));
  std::vector<uint8_t> stream(size_t(zw) * 4);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t k = 0; k < zw; ++k)
      put_le_word(stream.data() + 4 * k, uint32_t(t.qzeros[size_t(g * zw + k)]));
    for (int64_t o = 0; o < O; ++o) {
      uint32_t z = packed_code(stream.data(), t.bits, o);
      if (zeros == GptqZeros::kMinusOne) ++z;  // AutoGPTQ: zeros = unpacked + 1 (no wrap)
      if (z > 255)
        fail("{}: qzeros[{}] column {} decodes to zero-point {} (v1 zero-minus-one overflow at 8 bits)", what,
             g, o, z);
      st->zeros[size_t(o * G + g)] = uint8_t(z);
    }
  }

  st->scales.resize(size_t(O * G));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t o = 0; o < O; ++o) {
      const uint16_t s = t.scales[size_t(g * O + o)];
      if (!finite_f16(s)) fail("{}: scales[{}][{}] is not finite (fp16 bits 0x{:04x})", what, g, o, s);
      st->scales[size_t(o * G + g)] = s;
    }

  bool trivial = true;
  for (int64_t i = 0; i < int64_t(t.g_idx.size()); ++i) {
    const int32_t g = t.g_idx[size_t(i)];
    if (g < 0 || g >= G) fail("{}: g_idx[{}] = {} is outside [0, {})", what, i, g, G);
    trivial = trivial && g == i / gs;
  }
  if (!trivial) st->g_idx.assign(t.g_idx.begin(), t.g_idx.end());

  w.codes = st->codes.data();
  w.scales = st->scales.data();
  w.zeros = st->zeros.data();
  w.g_idx = trivial ? nullptr : st->g_idx.data();
  w.owner = std::move(st);
  return w;
}

AffineWeight from_gptq(const GptqTensors& t, GptqZeros zeros, std::string_view what) {
  GptqView v;
  v.bits = t.bits, v.in_features = t.in_features, v.out_features = t.out_features,
  v.group_size = t.group_size;
  v.qweight = t.qweight, v.qzeros = t.qzeros, v.scales = t.scales, v.g_idx = t.g_idx;
  return from_gptq(v, zeros, what);
}

}  // namespace lowbit
