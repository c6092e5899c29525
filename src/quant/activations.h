// Where the calibration pipeline keeps the activations entering the current layer for every window,
// (n, T, d) values. The whole set is large for real models (128 × 2048 × 4096 f32 = 4 GiB for an 8B model),
// so besides plain f32 in RAM it can be kept:
//   bf16: in RAM at half the size. Every store rounds to bf16 (round to nearest even), so later layers see
//         rounded inputs, as in a bf16 pipeline; results differ slightly from f32.
//   disk: as f32 in an unlinked temporary file, read and written one window at a time (pread/pwrite), so the
//         process holds one window; results are identical to f32. The OS page cache may keep the file in
//         memory while there is room, but it is not part of the process's RSS and is dropped under pressure.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lowbit {

class ScratchFile;

enum class ActStorage { F32, BF16, Disk };

// "f32" | "bf16" | "disk"; throws a one-line Error naming the accepted values.
ActStorage parse_act_storage(const std::string& s);

class Activations {
 public:
  int n = 0, T = 0, d = 0;

  Activations() = default;
  // Zero-filled. spill_dir (disk only): where the temporary file is created; empty = $TMPDIR or /tmp.
  Activations(int n, int T, int d, ActStorage storage = ActStorage::F32, std::string spill_dir = "");
  Activations(const Activations& o);  // a deep copy in the same storage (a new file for disk)
  Activations& operator=(const Activations& o);
  Activations(Activations&&) noexcept = default;
  Activations& operator=(Activations&&) noexcept = default;

  // The same shape and storage, zero-filled.
  Activations like() const { return Activations(n, T, d, storage_, spill_dir_); }
  size_t window_size() const { return size_t(T) * size_t(d); }
  // Window i (T, d) into dst / from src.
  void load(int i, float* dst) const;
  void store(int i, const float* src);
  // All windows (n, T, d) as f32 (tests).
  std::vector<float> all() const;

 private:
  ActStorage storage_ = ActStorage::F32;
  std::string spill_dir_;
  std::vector<float> f32_;
  std::vector<uint16_t> bf16_;
  std::shared_ptr<ScratchFile> spill_;
};

}  // namespace lowbit
