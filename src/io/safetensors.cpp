#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "io/byte_reader.h"

namespace lowbit {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the official reader's limit (100 MB)

// A non-negative JSON integer that fits in int64; anything else (float, negative, string) is rejected.
bool as_index(const Json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = uint64_t(i);
  } else {
    return false;
  }
  return *out <= uint64_t(std::numeric_limits<int64_t>::max());
}

TensorView parse_entry(const std::string& name, const std::string& key, const Json& e, const uint8_t* data_base,
                       uint64_t data_size, uint64_t* begin_out) {
  if (!e.is_object()) fail("{}: tensor '{}': header entry is not an object", name, key);
  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) fail("{}: tensor '{}': missing or non-string 'dtype'", name, key);
  TensorView t;
  const std::string& dts = dt->get_ref<const std::string&>();
  if (!dtype_from_name(dts, &t.dtype)) fail("{}: tensor '{}': unknown dtype '{}'", name, key, dts);

  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) fail("{}: tensor '{}': missing or non-array 'shape'", name, key);
  // numel over the non-zero dims must fit in int64 so TensorView::numel() cannot overflow in any order.
  uint64_t numel = 1, nonzero = 1;
  bool has_zero = false;
  for (const Json& d : *sh) {
    uint64_t v;
    if (!as_index(d, &v)) fail("{}: tensor '{}': shape entry {} is not a non-negative integer", name, key, d.dump());
    if (v == 0) has_zero = true;
    if (v != 0 && (!mul_ok(nonzero, v, &nonzero) || nonzero > uint64_t(std::numeric_limits<int64_t>::max())))
      fail("{}: tensor '{}': shape {} overflows", name, key, sh->dump());
    t.shape.push_back(int64_t(v));
  }
  numel = has_zero ? 0 : nonzero;
  uint64_t nbytes;
  if (!mul_ok(numel, dtype_size(t.dtype), &nbytes))
    fail("{}: tensor '{}': byte size of shape {} overflows", name, key, sh->dump());

  auto off = e.find("data_offsets");
  uint64_t begin, end;
  if (off == e.end() || !off->is_array() || off->size() != 2 || !as_index((*off)[0], &begin) ||
      !as_index((*off)[1], &end))
    fail("{}: tensor '{}': 'data_offsets' must be [begin, end] non-negative integers", name, key);
  if (begin > end) fail("{}: tensor '{}': data_offsets [{}, {}] has begin > end", name, key, begin, end);
  if (end > data_size)
    fail("{}: tensor '{}': data_offsets [{}, {}] past the end of the data ({} bytes)", name, key, begin, end,
         data_size);
  if (end - begin != nbytes)
    fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but {} {} needs {}", name, key, begin, end,
         end - begin, dts, shape_str(t.shape), nbytes);
  t.data = data_base + begin;
  t.nbytes = size_t(nbytes);
  t.source = name;
  *begin_out = begin;
  return t;
}

// Like write_file_atomic (temp file, fsync, rename) but streams the pieces, so writing a multi-GB checkpoint
// does not need a second copy of it in memory.
void write_chunks_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& chunks) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  for (auto [p, n] : chunks) {
    const auto* b = static_cast<const uint8_t*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, b, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        fail("{}: write failed: {}", tmp, std::strerror(e));
      }
      b += w;
      n -= size_t(w);
    }
  }
  int rc = ::fsync(fd);
  int e = errno;
  if (::close(fd) != 0 && rc == 0) {
    rc = -1;
    e = errno;
  }
  if (rc != 0) {
    ::unlink(tmp.c_str());
    fail("{}: cannot flush: {}", tmp, std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename into place: {}", path, std::strerror(e));
  }
}

}  // namespace

SafetensorsFile parse_safetensors_bytes(const uint8_t* data, size_t size, const std::string& name) {
  SafetensorsFile f;
  f.path = name;
  if (size < 8) fail("{}: truncated: {} bytes, a safetensors file starts with an 8-byte header length", name, size);
  uint64_t hlen;
  std::memcpy(&hlen, data, 8);
  if (hlen > size - 8)
    fail("{}: header length {} exceeds the file size {} (truncated or not a safetensors file)", name, hlen, size);
  if (hlen > kMaxHeaderBytes) fail("{}: header length {} exceeds the 100 MB limit", name, hlen);
  std::string_view text(reinterpret_cast<const char*>(data + 8), size_t(hlen));
  Json header = parse_json_text(text, name);
  if (!header.is_object()) fail("{}: header is not a JSON object", name);

  const uint8_t* base = data + 8 + hlen;
  uint64_t data_size = size - 8 - hlen;
  std::vector<std::pair<uint64_t, const std::string*>> order;  // (begin, name) for the overlap check
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail("{}: __metadata__ is not an object", name);
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail("{}: __metadata__ value of '{}' is not a string", name, m.key());
        f.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    uint64_t begin;
    auto [pos, _] = f.tensors.emplace(it.key(), parse_entry(name, it.key(), *it, base, data_size, &begin));
    order.emplace_back(begin, &pos->first);
  }
  std::sort(order.begin(), order.end());
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorView& prev = f.tensors.at(*order[i - 1].second);
    uint64_t prev_end = order[i - 1].first + prev.nbytes;
    if (order[i].first < prev_end)
      fail("{}: tensors '{}' and '{}' overlap (bytes [{}, {}) and [{}, ...))", name, *order[i - 1].second,
           *order[i].second, order[i - 1].first, prev_end, order[i].first);
  }
  return f;
}

SafetensorsFile load_safetensors(const std::string& path) {
  auto m = std::make_shared<const MappedFile>(path);
  SafetensorsFile f = parse_safetensors_bytes(m->data(), m->size(), path);
  f.mapping = std::move(m);
  return f;
}

void write_safetensors(const std::string& path, const std::map<std::string, TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const std::pair<const std::string, TensorView>*> order;
  for (const auto& kv : tensors) {
    const TensorView& t = kv.second;
    for (int64_t d : t.shape)
      if (d < 0) fail("{}: tensor '{}' has negative dimension in {}", path, kv.first, shape_str(t.shape));
    if (uint64_t(t.numel()) * dtype_size(t.dtype) != t.nbytes)
      fail("{}: tensor '{}': {} bytes given for {} {}", path, kv.first, t.nbytes, dtype_name(t.dtype),
           shape_str(t.shape));
    order.push_back(&kv);
  }
  std::stable_partition(order.begin(), order.end(), [](auto* kv) { return kv->second.nbytes % 8 == 0; });

  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t off = 0;
  for (auto* kv : order) {
    header[kv->first] = {{"dtype", dtype_name(kv->second.dtype)},
                         {"shape", kv->second.shape},
                         {"data_offsets", {off, off + kv->second.nbytes}}};
    off += kv->second.nbytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts at 8 + h.size(), a multiple of 8
  uint64_t hlen = h.size();
  std::vector<std::pair<const void*, size_t>> chunks = {{&hlen, 8}, {h.data(), h.size()}};
  for (auto* kv : order) chunks.emplace_back(kv->second.data, kv->second.nbytes);
  write_chunks_atomic(path, chunks);
}

}  // namespace lowbit
