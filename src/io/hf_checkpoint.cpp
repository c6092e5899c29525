#include "io/hf_checkpoint.h"

#include "core/error.h"
#include "core/json.h"
#include "core/paths.h"
#include "io/byte_reader.h"
#include "io/hf_config.h"
#include "io/hf_quantized.h"
#include "io/safetensors.h"

namespace lowbit {

namespace {

void add_owner(Checkpoint& c, const SafetensorsFile& f) {
  c.owners.push_back(f.mapping);
}

}  // namespace

Checkpoint load_hf_checkpoint(const std::string& dir) {
  Checkpoint c;
  c.path = dir;
  c.format = "hf-safetensors";
  std::string config = dir + "/config.json";
  if (!path_exists(config)) fail("{}: no config.json in the checkpoint directory", dir);
  c.config = load_hf_config(config);

  std::string index = dir + "/model.safetensors.index.json";
  std::string single = dir + "/model.safetensors";
  if (path_exists(index)) {
    Json j = parse_json_file(index);
    auto wm = j.is_object() ? j.find("weight_map") : j.end();
    if (wm == j.end() || !wm->is_object()) fail("{}: missing 'weight_map' object", index);
    std::map<std::string, SafetensorsFile> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string()) fail("{}: weight_map entry '{}' is not a file name", index, printable(it.key()));
      const std::string& shard = it->get_ref<const std::string&>();
      if (has_control_chars(it.key()) || has_control_chars(shard))
        fail("{}: weight_map entry '{}': '{}' contains control characters", index, printable(it.key()),
             printable(shard));
      // Shards sit beside the index; a path would let an index point anywhere.
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
        fail("{}: weight_map entry '{}' names an invalid shard file '{}'", index, it.key(), shard);
      auto s = shards.find(shard);
      if (s == shards.end()) {
        std::string sp = dir + "/" + shard;
        if (!path_exists(sp)) fail("{}: shard {} (listed for tensor '{}') not found", index, sp, it.key());
        s = shards.emplace(shard, load_safetensors(sp)).first;
        add_owner(c, s->second);
      }
      auto t = s->second.tensors.find(it.key());
      if (t == s->second.tensors.end())
        fail("{}: tensor '{}' is listed in {} but missing from the shard", s->second.path, it.key(), index);
      c.tensors[it.key()] = t->second;
    }
  } else if (path_exists(single)) {
    SafetensorsFile f = load_safetensors(single);
    add_owner(c, f);
    c.tensors = std::move(f.tensors);
  } else {
    fail("{}: neither model.safetensors nor model.safetensors.index.json found", dir);
  }
  convert_hf_quantized(c, dir);  // GPTQ / AWQ layouts -> lowbit's affine tensors
  return c;
}

}  // namespace lowbit
