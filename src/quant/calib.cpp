#include "quant/calib.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/mmap.h"
#include "core/sha256.h"
#include "core/sys.h"
#include "kernels/ops.h"

namespace lowbit {

namespace {

// Uniform in [0, n) by rejection: the same sequence on every platform for a given engine state.
uint64_t uniform_below(std::mt19937_64& g, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - (max % n + 1) % n;  // accept v <= limit: (limit + 1) is a multiple of n
  for (;;) {
    const uint64_t v = g();
    if (v <= limit) return v % n;
  }
}

}  // namespace

std::vector<int64_t> sample_window_starts(int64_t n_tokens, int nsamples, int seqlen, uint64_t seed) {
  LOWBIT_ASSERT(nsamples >= 0 && seqlen > 0 && n_tokens >= int64_t(seqlen) + 1);
  std::mt19937_64 g(seed);
  std::vector<int64_t> starts(static_cast<size_t>(nsamples));
  for (auto& s : starts) s = int64_t(uniform_below(g, uint64_t(n_tokens - seqlen)));
  return starts;
}

CalibSet load_calibration(const Tokenizer& tok, const std::string& path, int nsamples, int seqlen,
                          uint64_t seed) {
  if (nsamples < 1) fail("calibration: nsamples must be at least 1 (got {})", nsamples);
  if (seqlen < 1) fail("calibration: seqlen must be at least 1 (got {})", seqlen);
  const std::string text = read_file(path);
  CalibSet c;
  c.path = path;
  c.sha256 = sha256_hex(text.data(), text.size());
  const std::vector<int32_t> ids = tok.encode_with_bos(text);
  c.stream_tokens = int64_t(ids.size());
  if (c.stream_tokens < int64_t(seqlen) + 1)
    fail("{}: calibration text has {} tokens, fewer than seqlen + 1 = {}", path, c.stream_tokens, seqlen + 1);
  c.nsamples = nsamples;
  c.seqlen = seqlen;
  c.starts = sample_window_starts(c.stream_tokens, nsamples, seqlen, seed);
  c.tokens.resize(size_t(nsamples) * size_t(seqlen));
  for (int i = 0; i < nsamples; ++i)
    std::copy_n(ids.begin() + c.starts[size_t(i)], seqlen, c.tokens.begin() + size_t(i) * seqlen);
  // Tokenizing a large text leaves ~100 bytes per character of freed small allocations resident (measured:
  // 287 MB for the 2.8 MB test-bed text); return them before the activations are allocated.
  release_free_memory();
  return c;
}

Activations embed_windows(const LlamaModel& model, const CalibSet& calib, int T, ActStorage storage,
                          const std::string& spill_dir) {
  LOWBIT_ASSERT(T > 0 && T <= calib.seqlen);
  Activations a(calib.nsamples, T, model.config().n_embd, storage, spill_dir);
  std::vector<float> x(a.window_size());  // (T, d)
  // Only the rows of the windows' tokens are wanted, not the whole table: no read-around, and the pages
  // are let go after every window (a fault still maps up to 16 neighbouring cached pages).
  const TensorView emb = model.checkpoint().get("model.embed_tokens.weight");
  const size_t emb_bytes = emb.nbytes;
  expect_random_reads(emb.data, emb_bytes, true);
  for (int i = 0; i < a.n; ++i) {
    model.embed(std::span<const int32_t>(calib.tokens.data() + size_t(i) * calib.seqlen, size_t(T)),
                x.data());
    a.store(i, x.data());
    release_mapped_pages(emb.data, emb_bytes);
  }
  expect_random_reads(emb.data, emb_bytes, false);
  return a;
}

void run_block(const LlamaModel& model, int layer, Activations& acts, BlockObserver* obs, bool update) {
  KVCache cache = model.new_cache(acts.T);
  std::vector<float> x(acts.window_size());  // (T, d)
  for (int i = 0; i < acts.n; ++i) {
    acts.load(i, x.data());
    cache.n_past = 0;
    try {
      model.block_forward(layer, x.data(), acts.T, cache, obs);
    } catch (const StopBlock&) {
      LOWBIT_ASSERT(!update);  // an updating run must produce the whole output
    }
    if (update) acts.store(i, x.data());
  }
}

HessianObserver::HessianObserver(std::vector<InputSite> sites, bool f64) : f64_(f64) {
  for (InputSite s : sites) {
    acc_[int(s)].wanted = true;
    last_ = std::max(last_, int(s));
  }
}

void HessianObserver::observe(int layer, InputSite site, const float* x, int64_t n, int64_t cols) {
  Acc& a = acc_[int(site)];
  if (a.wanted) {
    if (a.n == 0) {
      a.cols = cols;
      if (f64_)
        a.s64.assign(size_t(cols * cols), 0.0);
      else
        a.s.assign(size_t(cols * cols), 0.0f);
    }
    LOWBIT_ASSERT(a.cols == cols);
    // S (cols, cols) += xᵀ x, x (n, cols): upper triangle only.
    Timer t;
    if (f64_) {
      x64_.assign(x, x + n * cols);
      ops::syrk_upper_f64(cols, n, 1.0, x64_.data(), cols, 1.0, a.s64.data(), cols);
    } else {
      ops::syrk_upper(cols, n, 1.0f, x, cols, 1.0f, a.s.data(), cols);
    }
    a.n += n;
    seconds_ += t.seconds();
    flops_ += double(n) * double(cols) * double(cols + 1);
  }
  if (int(site) >= last_) throw StopBlock{};
}

// Σ x xᵀ (upper triangle of s, (c, c)) over n tokens -> the full symmetric 2/n Σ x xᵀ, in place.
std::vector<float> HessianObserver::finish(std::vector<float> s, int64_t c, int64_t n) {
  const float f = float(2.0 / double(n));
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = i; j < c; ++j) s[size_t(i * c + j)] = s[size_t(j * c + i)] = f * s[size_t(i * c + j)];
  return s;
}

std::vector<float> HessianObserver::hessian(InputSite site) const {
  const Acc& a = acc_[int(site)];
  LOWBIT_ASSERT(!f64_ && a.wanted && a.n > 0);
  return finish(a.s, a.cols, a.n);
}

std::vector<double> HessianObserver::finish_f64(std::vector<double> H, int64_t c, int64_t n) {
  const double f = 1.0 / double(n);
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = i; j < c; ++j) H[size_t(i * c + j)] = H[size_t(j * c + i)] = f * H[size_t(i * c + j)];
  return H;
}

std::vector<double> HessianObserver::hessian_f64(InputSite site) const {
  const Acc& a = acc_[int(site)];
  LOWBIT_ASSERT(f64_ && a.wanted && a.n > 0);
  return finish_f64(a.s64, a.cols, a.n);
}

std::vector<double> HessianObserver::take_hessian_f64(InputSite site) {
  Acc& a = acc_[int(site)];
  LOWBIT_ASSERT(f64_ && a.wanted && a.n > 0);
  std::vector<double> H = finish_f64(std::move(a.s64), a.cols, a.n);
  a = Acc{};
  return H;
}

std::vector<float> HessianObserver::take_hessian(InputSite site) {
  Acc& a = acc_[int(site)];
  LOWBIT_ASSERT(!f64_ && a.wanted && a.n > 0);
  std::vector<float> H = finish(std::move(a.s), a.cols, a.n);
  a = Acc{};
  return H;
}

}  // namespace lowbit
