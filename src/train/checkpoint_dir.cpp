#include "train/checkpoint_dir.h"

#include <filesystem>

namespace fs = std::filesystem;

namespace lowbit {

void write_checkpoint_dir(const std::string& out, const std::function<void(const std::string& tmp)>& write) {
  const fs::path dir = fs::path(out) / "checkpoint", tmp = fs::path(out) / "checkpoint.tmp",
                 old = fs::path(out) / "checkpoint.old";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write(tmp.string());
  // old <- dir, dir <- tmp: between the two renames only checkpoint.old exists, and resume looks there too.
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

std::string find_checkpoint_dir(const std::string& out) {
  for (const char* name : {"checkpoint", "checkpoint.old"}) {
    const fs::path p = fs::path(out) / name;
    if (fs::exists(p / "trainer_state.json")) return p.string();
  }
  return "";
}

}  // namespace lowbit
