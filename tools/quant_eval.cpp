// Developer tool (not part of the CMake build): quantize a model with quant/quantize.h and evaluate
// perplexity, or dump one real layer's weight and calibration activations plus our RTN/GPTQ results as .npy
// files for tools/ref_quant.py. Build after `cmake --build --preset release` with tools/build_quant_eval.sh.
//
//   quant_eval MODEL --method rtn|gptq|awq --wbits 4 --group 128 [--act-order] [--calib FILE --nsamples 16
//              --seqlen 2048] [--damp 0.01] [--all-linears] [--eval wikitext2,ptb,c4-sample]
//              [--max-windows N]
//     --all-linears prints every linear's rel_err (default: the first and last layer's); --eval "" skips
//     the perplexity.
//   quant_eval MODEL --dump DIR --layer 3 --site mlp|attn|o|down --calib FILE --nsamples 16 --seqlen 2048
//   quant_eval MODEL --dump-tokens DIR --calib FILE --nsamples 16 --seqlen 2048 [--eval wikitext2,...]
//     writes the calibration windows (calib.npy, (nsamples, seqlen) int32) and each text's token stream
//     (<name>.npy, BOS first) for tools/ref_quant_model.py, so both sides see the same tokens.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mmap.h"
#include "core/paths.h"
#include "core/sys.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "kernels/linear.h"
#include "quant/calib.h"
#include "quant/methods/gptq.h"
#include "quant/methods/rtn.h"
#include "quant/quantize.h"

using namespace lowbit;

namespace {

// .npy v1.0, little-endian, C order.
template <typename T>
void write_npy(const std::string& path, const T* data, std::vector<int64_t> shape, const char* descr) {
  std::string dims;
  size_t n = 1;
  for (int64_t d : shape) dims += std::to_string(d) + ", ", n *= size_t(d);
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, dims);
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(1), out += char(0);
  out += char(header.size() & 0xff), out += char(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(data), n * sizeof(T));
  write_file_atomic(path, out);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = std::min(s.find(',', start), s.size());
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

struct CaptureSite : BlockObserver {
  int layer;
  InputSite site;
  std::vector<float> x;
  int64_t cols = 0;
  void observe(int l, InputSite s, const float* p, int64_t n, int64_t c) override {
    if (l == layer && s == site) x.insert(x.end(), p, p + n * c), cols = c;
  }
};

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) fail("usage: quant_eval MODEL [options]");
  std::string model_path = argv[1], dump, dump_tokens, evals = "wikitext2", site_name = "mlp";
  QuantConfig cfg;
  int max_windows = 0, layer = 0;
  bool all_linears = false;  // print every linear's rel_err, not only the first and last layer's
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) fail("{} needs a value", a);
      return argv[++i];
    };
    if (a == "--method")
      cfg.method = next();
    else if (a == "--wbits")
      cfg.wbits = std::stoi(next());
    else if (a == "--group")
      cfg.group = std::stoi(next());
    else if (a == "--sym")
      cfg.options["sym"] = true;
    else if (a == "--act-order")
      cfg.options["act_order"] = true;
    else if (a == "--static-groups")
      cfg.options["static_groups"] = true;
    else if (a == "--true-sequential")
      cfg.options["true_sequential"] = true;
    else if (a == "--mse")
      cfg.options["mse"] = true;
    else if (a == "--calib")
      cfg.calib_file = next();
    else if (a == "--nsamples")
      cfg.nsamples = std::stoi(next());
    else if (a == "--seqlen")
      cfg.seqlen = std::stoi(next());
    else if (a == "--seed")
      cfg.seed = std::stoull(next());
    else if (a == "--damp")
      cfg.options["damp"] = std::stod(next());
    else if (a == "--awq-seqlen")
      cfg.options["awq_seqlen"] = std::stoi(next());
    else if (a == "--eval")
      evals = next();
    else if (a == "--all-linears")
      all_linears = true;
    else if (a == "--max-windows")
      max_windows = std::stoi(next());
    else if (a == "--dump")
      dump = next();
    else if (a == "--dump-tokens")
      dump_tokens = next();
    else if (a == "--layer")
      layer = std::stoi(next());
    else if (a == "--site")
      site_name = next();
    else
      fail("unknown option {}", a);
  }
  const SearchPaths paths = find_search_paths();
  model_path = resolve_model_path(model_path, paths);
  LlamaModel model(load_checkpoint(model_path));
  auto tok = load_tokenizer_for_model(model_path);

  if (!dump_tokens.empty()) {
    const CalibSet calib = load_calibration(*tok, cfg.calib_file, cfg.nsamples, cfg.seqlen, cfg.seed);
    write_npy(dump_tokens + "/calib.npy", calib.tokens.data(), {calib.nsamples, calib.seqlen}, "<i4");
    for (const std::string& ds : split_list(evals)) {
      const std::vector<int32_t> ids = tok->encode_with_bos(build_eval_text(ds, paths).text);
      write_npy(dump_tokens + "/" + ds + ".npy", ids.data(), {int64_t(ids.size())}, "<i4");
    }
    std::printf("dumped calib.npy%s%s to %s\n", evals.empty() ? "" : " and ", evals.c_str(),
                dump_tokens.c_str());
    return 0;
  }

  if (!dump.empty()) {
    const InputSite site = site_name == "attn"   ? InputSite::AttnIn
                           : site_name == "o"    ? InputSite::OIn
                           : site_name == "down" ? InputSite::DownIn
                                                 : InputSite::MlpIn;
    const LinearKind kind = site == InputSite::AttnIn   ? LinearKind::Q
                            : site == InputSite::OIn    ? LinearKind::O
                            : site == InputSite::DownIn ? LinearKind::Down
                                                        : LinearKind::Up;
    const CalibSet calib = load_calibration(*tok, cfg.calib_file, cfg.nsamples, cfg.seqlen, cfg.seed);
    Activations acts = embed_windows(model, calib, cfg.seqlen);
    for (int l = 0; l < layer; ++l) run_block(model, l, acts, nullptr, true);  // full-precision inputs
    CaptureSite cap;
    cap.layer = layer, cap.site = site;
    HessianObserver hobs({site});
    struct Both : BlockObserver {
      BlockObserver *a, *b;
      void observe(int l, InputSite s, const float* p, int64_t n, int64_t c) override {
        a->observe(l, s, p, n, c);
        b->observe(l, s, p, n, c);
      }
    } both;
    both.a = &cap, both.b = &hobs;
    run_block(model, layer, acts, &both, false);
    const Linear& lin = model.linear(layer, kind);
    const std::vector<float> W = linear_to_f32(lin);
    const int64_t rows = lin.rows(), cols = lin.cols(), n = int64_t(cap.x.size()) / cols;
    write_npy(dump + "/W.npy", W.data(), {rows, cols}, "<f4");
    write_npy(dump + "/X.npy", cap.x.data(), {n, cols}, "<f4");
    const std::vector<float> H = hobs.hessian(site);
    write_npy(dump + "/H.npy", H.data(), {cols, cols}, "<f4");
    struct Case {
      const char* name;
      const char* method;
      int bits;
      int group;
      bool act;
    };
    for (const Case& c :
         {Case{"rtn_w4g128", "rtn", 4, 128, false}, Case{"rtn_w3", "rtn", 3, kPerChannel, false},
          Case{"gptq_w4g128", "gptq", 4, 128, false}, Case{"gptq_w4", "gptq", 4, kPerChannel, false},
          Case{"gptq_w3g128", "gptq", 3, 128, false}, Case{"gptq_w2g128", "gptq", 2, 128, false},
          Case{"gptq_w4g128_act", "gptq", 4, 128, true}}) {
      QuantSpec s;
      s.bits = c.bits;
      std::shared_ptr<const AffineWeight> q;
      if (std::string(c.method) == "rtn") {
        q = quantize_rtn(W.data(), rows, cols, s, c.group > 0 ? Granularity::Group : Granularity::Channel,
                         c.group);
      } else {
        GptqOptions o;
        o.spec = s;
        o.group_size = c.group;
        o.act_order = c.act;
        q = gptq_quantize(W.data(), rows, cols, H, o, c.name).weight;
      }
      std::vector<float> deq(size_t(rows * cols));
      affine_dequantize_rows_scalar(*q, 0, rows, deq.data());
      std::vector<int32_t> codes(deq.size());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t col = 0; col < cols; ++col)
          codes[size_t(r * cols + col)] = int32_t(packed_code(q->codes + r * q->row_bytes(), q->bits, col));
      write_npy(dump + "/" + c.name + "_What.npy", deq.data(), {rows, cols}, "<f4");
      write_npy(dump + "/" + c.name + "_codes.npy", codes.data(), {rows, cols}, "<i4");
    }
    std::printf("dumped layer %d %s: W (%ld, %ld), X (%ld, %ld) to %s\n", layer, linear_name(kind),
                long(rows), long(cols), long(n), long(cols), dump.c_str());
    return 0;
  }

  if (cfg.method != "fp") {
    const QuantReport r = quantize_model(model, *tok, cfg);
    std::printf("%s w%d g%d%s: %.1f s, peak RSS %.0f MiB, %.3f bits/weight\n", cfg.method.c_str(), cfg.wbits,
                cfg.group, cfg.opt<bool>("act_order") ? " act-order" : "", r.seconds,
                double(r.peak_rss) / (1 << 20), r.bits_per_weight);
    for (const LayerReport& l : r.layers)
      std::printf("  layer %d: %.1f s  awq alpha %.2f %.2f %.2f %.2f\n", l.layer, l.seconds, l.awq_alpha[0],
                  l.awq_alpha[1], l.awq_alpha[2], l.awq_alpha[3]);
    for (const LinearReport& l : r.linears)
      if (all_linears || l.layer == 0 || l.layer == int(r.layers.size()) - 1)
        std::printf("  %d %-18s rel_err %.7f loss %.3f\n", l.layer, linear_name(l.kind), l.rel_err, l.loss);
  }
  for (const std::string& ds : split_list(evals)) {
    const EvalText et = build_eval_text(ds, paths);
    const std::vector<int32_t> ids = tok->encode_with_bos(et.text);
    PplOptions po;
    po.max_windows = max_windows;
    po.label = ds;
    const PplResult pr = perplexity(model, ids, po);
    std::printf("%s %s w%d g%d%s: %s ppl %.4f (%d windows, %.0f s)\n", model_path.c_str(), cfg.method.c_str(),
                cfg.wbits, cfg.group, cfg.opt<bool>("act_order") ? " act-order" : "", ds.c_str(), pr.ppl,
                pr.windows, pr.seconds);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
