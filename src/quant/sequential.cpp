#include "quant/sequential.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>

#include "core/error.h"
#include "quant/calib.h"

namespace lowbit {

void write_npy(const std::filesystem::path& path, const void* data, size_t elem_size,
               const std::vector<int64_t>& shape, const char* descr) {
  std::string dims;
  size_t count = 1;
  for (int64_t d : shape) dims += std::to_string(d) + ", ", count *= size_t(d);
  std::string header =
      "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f << "\x93NUMPY" << char(1) << char(0) << char(header.size() & 0xff) << char(header.size() >> 8) << header;
  f.write(static_cast<const char*>(data), std::streamsize(count * elem_size));
  if (!f) fail("{}: cannot write", path.string());
}

namespace {

// Copies the inputs of the wanted sites, then hands them on (the inner observer may end the block).
class InputKeeper final : public BlockObserver {
 public:
  InputKeeper(BlockObserver& inner, const std::set<InputSite>& sites) : inner_(inner) {
    for (InputSite s : sites) x_[int(s)] = std::make_shared<std::vector<float>>();
  }
  void observe(int layer, InputSite site, const float* x, int64_t n, int64_t cols) override {
    if (auto& v = x_[int(site)]) v->insert(v->end(), x, x + n * cols);
    inner_.observe(layer, site, x, n, cols);
  }
  std::shared_ptr<std::vector<float>> x_[4];

 private:
  BlockObserver& inner_;
};

}  // namespace

void quantize_layer_with_hessians(LayerJob& job, bool true_sequential, bool f64, const HessianQuantizer& q,
                                  bool keep_inputs) {
  using K = LinearKind;
  LlamaModel& model = job.model;
  const int layer = job.layer;
  std::vector<std::vector<K>> groups;
  if (true_sequential)
    groups = {{K::K, K::V, K::Q}, {K::O}, {K::Up, K::Gate}, {K::Down}};
  else
    groups = {{K::Q, K::K, K::V, K::O, K::Gate, K::Up, K::Down}};
  const char* dump_env = std::getenv("LOWBIT_QUANT_DUMP");
  for (const auto& group : groups) {
    std::set<InputSite> sites;
    for (K k : group) sites.insert(input_site(k));
    HessianObserver obs(std::vector<InputSite>(sites.begin(), sites.end()), f64);
    InputKeeper keeper(obs, keep_inputs ? sites : std::set<InputSite>{});
    run_block(model, layer, *job.acts, keep_inputs ? static_cast<BlockObserver*>(&keeper) : &obs, false);
    job.report.hessian_seconds += obs.seconds();
    job.report.hessian_flops += obs.flops();
    for (size_t i = 0; i < group.size(); ++i) {
      const K k = group[i];
      const Linear& lin = model.linear(layer, k);
      LinearJob lj;
      lj.layer = layer;
      lj.kind = k;
      lj.name = linear_tensor_name(layer, k);
      lj.w = linear_to_f32(lin);
      lj.rows = lin.rows();
      lj.cols = lin.cols();
      // The last linear reading a site takes its H instead of copying it (a 1B model's down_proj H is
      // 256 MiB in f32).
      const InputSite site = input_site(k);
      const bool last = std::none_of(group.begin() + long(i) + 1, group.end(),
                                     [&](K later) { return input_site(later) == site; });
      if (f64)
        lj.H64 = last ? obs.take_hessian_f64(site) : obs.hessian_f64(site);
      else
        lj.H = last ? obs.take_hessian(site) : obs.hessian(site);
      if (keep_inputs) {
        lj.x = keeper.x_[int(site)];
        lj.x_tokens = int64_t(lj.x->size()) / lj.cols;
      }
      if (dump_env && *dump_env) {
        lj.dump_dir = std::filesystem::path(dump_env) / (std::to_string(layer) + "." + linear_name(k));
        std::filesystem::create_directories(lj.dump_dir);
        write_npy(lj.dump_dir / "W.npy", lj.w.data(), 4, {lj.rows, lj.cols}, "<f4");
        if (f64)
          write_npy(lj.dump_dir / "H.npy", lj.H64.data(), 8, {lj.cols, lj.cols}, "<f8");
        else
          write_npy(lj.dump_dir / "H.npy", lj.H.data(), 4, {lj.cols, lj.cols}, "<f4");
      }
      LinearResult res = q(lj);
      LOWBIT_ASSERT(res.weight && res.weight->rows == lj.rows && res.weight->cols == lj.cols);
      LinearReport r = res.rel_err_given ? linear_report(layer, k, *res.weight)
                                         : linear_report(layer, k, lj.w, *res.weight);
      if (res.rel_err_given) r.rel_err = res.rel_err;
      r.loss = res.loss;
      r.damp = res.damp;
      r.paper_bits = res.paper_bits;
      if (!lj.dump_dir.empty()) {
        std::vector<float> deq(size_t(lj.rows * lj.cols));
        res.weight->format().dequantize_ref(*res.weight, 0, lj.rows, deq.data());
        write_npy(lj.dump_dir / "Q.npy", deq.data(), 4, {lj.rows, lj.cols}, "<f4");
      }
      job.report.linears.push_back(r);
      install_linear(model, layer, k, std::move(res.weight));
    }
  }
  run_block(model, layer, *job.acts, nullptr, true);
}

}  // namespace lowbit
