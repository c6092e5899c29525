// Counter-based randomness (training, random rotations): a value is a pure function of (key, index), so a
// recomputed forward (gradient checkpointing) and a resumed run draw exactly what the first did, with no
// generator state to save. SplitMix64's finaliser (Steele, Lea, Flood 2014) as the mixing function.
#pragma once
#include <cstdint>

namespace lowbit {

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A key for one use: the parent key and a label (a step, a layer, a linear) mixed together.
inline uint64_t subkey(uint64_t key, uint64_t label) {
  return mix64(key ^ mix64(label + 0x632be59bd9b4e019ull));
}

// Uniform in [0, 1), 53 bits, for (key, i).
inline double uniform01(uint64_t key, uint64_t i) {
  return double(mix64(key ^ mix64(i)) >> 11) * 0x1.0p-53;
}

}  // namespace lowbit
