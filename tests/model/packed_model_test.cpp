// A model whose linears are packed QuantizedWeights computes the same logits as the same model with the
// dequantized weights stored densely (the fake-quant path), on both the GEMV (decode) and sgemm (prefill)
// paths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "formats/affine.h"
#include "kernels/linear.h"
#include "model/llama.h"
#include "test_util.h"

namespace lowbit {
namespace {

// Min/max asymmetric RTN of one weight into the packed format, written directly from formats/affine.h so
// the test does not depend on the quant layer.
Linear pack_rtn(const std::vector<float>& w, int64_t rows, int64_t cols, int bits, int64_t group) {
  struct Buf {
    std::vector<uint8_t> codes, zeros;
    std::vector<uint16_t> scales;
  };
  auto b = std::make_shared<Buf>();
  auto q = std::make_shared<AffineWeight>();
  q->bits = bits, q->rows = rows, q->cols = cols, q->group_size = group;
  b->codes.assign(q->row_bytes() * size_t(rows), 0);
  b->scales.resize(size_t(rows * q->n_groups()));
  b->zeros.resize(b->scales.size());
  const int maxq = (1 << bits) - 1;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < q->n_groups(); ++g) {
      float lo = 0, hi = 0;
      for (int64_t c = g * group; c < (g + 1) * group; ++c)
        lo = std::min(lo, w[size_t(r * cols + c)]), hi = std::max(hi, w[size_t(r * cols + c)]);
      uint16_t s16 = f32_to_f16((hi - lo) / float(maxq));
      float s = f16_to_f32(s16);
      int z = int(std::nearbyint(-lo / s));
      b->scales[size_t(r * q->n_groups() + g)] = s16;
      b->zeros[size_t(r * q->n_groups() + g)] = uint8_t(z);
      for (int64_t c = g * group; c < (g + 1) * group; ++c) {
        int code = std::clamp(int(std::nearbyint(w[size_t(r * cols + c)] / s)) + z, 0, maxq);
        pack_code(b->codes.data() + size_t(r) * q->row_bytes(), bits, c, uint32_t(code));
      }
    }
  q->codes = b->codes.data(), q->scales = b->scales.data(), q->zeros = b->zeros.data();
  q->owner = b;
  Linear l;
  l.packed = q;
  return l;
}

TEST(PackedModel, PackedAndFakeQuantLogitsAgree) {
  const std::string path = test::model_path("testbed-25m");
  LlamaModel packed(load_checkpoint(path)), fake(load_checkpoint(path));
  const auto& c = packed.config();
  int i = 0;
  for (int l = 0; l < c.n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& orig = packed.linear(l, k);
      const int bits = 2 + (i++ % 7);  // every width 2..8 somewhere
      Linear q = pack_rtn(linear_to_f32(orig), orig.rows(), orig.cols(), bits, 128);
      fake.set_linear(l, k, owned_f32_linear(linear_to_f32(q), q.rows(), q.cols()));
      packed.set_linear(l, k, std::move(q));
    }
  const auto ids = test::testbed_refs()["golden"]["input_ids"].get<std::vector<int32_t>>();
  const int64_t V = c.n_vocab, n = int64_t(ids.size());
  for (int64_t len : {int64_t(1), int64_t(3), n}) {  // GEMV and sgemm paths
    std::vector<float> a(size_t(len * V)), b(size_t(len * V));
    KVCache ca = packed.new_cache(int(len)), cb = fake.new_cache(int(len));
    packed.forward(std::span(ids).subspan(0, size_t(len)), ca, a.data());
    fake.forward(std::span(ids).subspan(0, size_t(len)), cb, b.data());
    float max_diff = 0;
    for (size_t j = 0; j < a.size(); ++j) max_diff = std::max(max_diff, std::fabs(a[j] - b[j]));
    // Same dequantized values; only the summation order differs (sgemm vs fused dot): ~1e-5 relative on
    // logits.
    EXPECT_LT(max_diff, 2e-3f) << "len " << len;
  }
}

}  // namespace
}  // namespace lowbit
