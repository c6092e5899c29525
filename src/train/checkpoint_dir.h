// Training state on disk as one directory, replaced atomically: OUT/checkpoint/ holds the last completed
// checkpoint (its trainer_state.json last), a new one is written as OUT/checkpoint.tmp/ and swapped in by
// renames, so a kill at any point leaves a whole checkpoint (fine-tuning, DB-LLM's training).
#pragma once
#include <functional>
#include <string>

namespace lowbit {

// Writes a checkpoint through write(tmp_dir) (which must create trainer_state.json in it) and swaps it in.
void write_checkpoint_dir(const std::string& out, const std::function<void(const std::string& tmp)>& write);
// The checkpoint to resume from: OUT/checkpoint/, or OUT/checkpoint.old/ when a kill fell between the
// renames; "" when neither holds a trainer_state.json.
std::string find_checkpoint_dir(const std::string& out);

}  // namespace lowbit
