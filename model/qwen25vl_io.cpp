// Qwen2.5-VL Hugging Face directories: loading (single file or shards + index,
// F32/BF16/F64) and saving in the same layout.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

#include "model/file_util.h"
#include "model/qwen25vl.h"
#include "model/safetensors.h"

namespace visplay {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// transformers 5 writes model.language_model.* and model.visual.*; the released
// checkpoints (and our saves) use model.* and visual.*.
std::string canonical_name(const std::string& name) {
  const std::string lm = "model.language_model.", vis = "model.visual.";
  if (name.compare(0, lm.size(), lm) == 0) return "model." + name.substr(lm.size());
  if (name.compare(0, vis.size(), vis) == 0) return "visual." + name.substr(vis.size());
  return name;
}

bool ignorable(const std::string& name, const Qwen25VLConfig& config) {
  if (name.size() >= 8 && name.compare(name.size() - 8, 8, "inv_freq") == 0) return true;
  return name == "lm_head.weight" && config.text.tie_word_embeddings;
}

json read_json(const fs::path& path) {
  try {
    return json::parse(read_text_file(path.string()));
  } catch (const json::parse_error& e) {
    throw std::runtime_error(path.string() + ": invalid JSON: " + e.what());
  }
}

const char* hf_dtype_name(DType t) { return t == DType::bf16 ? "bfloat16" : "float32"; }

}  // namespace

Qwen25VL load_qwen25vl(const std::string& dir, DType dtype) {
  fs::path root(dir);
  if (!fs::is_directory(root)) throw std::runtime_error(dir + ": not a folder");
  if (dtype != DType::f32 && dtype != DType::bf16)
    throw std::runtime_error(dir + ": load_qwen25vl: dtype must be f32 or bf16");
  // Placeholders in the wanted dtype: each is replaced (and freed) as its tensor is read.
  Qwen25VL model(load_qwen25vl_config((root / "config.json").string()), dtype);
  std::vector<fs::path> files;
  fs::path single = root / "model.safetensors", index = root / "model.safetensors.index.json";
  if (fs::exists(index)) {
    json j = read_json(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw std::runtime_error(index.string() + ": field \"weight_map\": missing or not an object");
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw std::runtime_error(index.string() + ": weight_map entry '" + it.key() +
                                 "' is not a file name");
      shards.insert(it.value().get<std::string>());
    }
    for (const std::string& s : shards) files.push_back(root / s);
  } else if (fs::exists(single)) {
    files.push_back(single);
  } else {
    throw std::runtime_error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  ParamStore& params = model.params();
  std::map<std::string, std::string> loaded_from;  // canonical name -> file
  for (const fs::path& path : files) {
    SafetensorsFile file(path.string());
    for (const SafetensorsEntry& e : file.entries()) {
      std::string name = canonical_name(e.name);
      if (ignorable(name, model.config())) continue;
      if (!params.contains(name))
        throw std::runtime_error(path.string() + ": unexpected tensor '" + e.name + "'");
      if (loaded_from.count(name))
        throw std::runtime_error(path.string() + ": tensor '" + e.name + "' also in " +
                                 loaded_from[name]);
      const Tensor& expected = params.get(name);
      if (e.shape != expected.shape())
        throw std::runtime_error(path.string() + ": tensor '" + e.name + "' has shape " +
                                 shape_str(e.shape) + ", the config needs " +
                                 shape_str(expected.shape()));
      if (e.dtype != DType::f32 && e.dtype != DType::bf16 && e.dtype != DType::f64)
        throw std::runtime_error(path.string() + ": tensor '" + e.name + "' has dtype " +
                                 e.dtype_name + " (need F32, BF16 or F64)");
      // F64 goes through f32 as an f32 load converted afterwards would round it (twice).
      Tensor stored = file.load(e.name);
      if (stored.dtype() == DType::f64) stored = stored.to(DType::f32);
      params.set(name, stored.to(dtype).contiguous());
      loaded_from[name] = path.string();
    }
  }
  for (const std::string& name : params.names())
    if (!loaded_from.count(name)) throw std::runtime_error(dir + ": missing tensor '" + name + "'");
  return model;
}

void save_qwen25vl(const std::string& dir, const Qwen25VL& model,
                   const Qwen25VLSaveOptions& options) {
  if (options.dtype != DType::f32 && options.dtype != DType::bf16)
    throw std::runtime_error(dir + ": save_qwen25vl: dtype must be f32 or bf16");
  if (options.max_shard_bytes <= 0)
    throw std::runtime_error(dir + ": save_qwen25vl: max_shard_bytes must be positive");
  fs::path root(dir);
  fs::create_directories(root);
  // Shards filled in parameter order, a new one when the next tensor would not fit.
  const ParamStore& params = model.params();
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (const std::string& name : params.names()) {
    Tensor t = params.get(name).detach().to(options.dtype).contiguous();
    int64_t bytes = t.numel() * static_cast<int64_t>(dtype_size(options.dtype));
    if (!shards.back().empty() && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(name, t);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  // Files of an earlier save with another shard count would confuse a reader.
  for (const auto& entry : fs::directory_iterator(root)) {
    std::string f = entry.path().filename().string();
    if (f == "model.safetensors" || f == "model.safetensors.index.json" ||
        (f.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors"))
      fs::remove(entry.path());
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (shards.size() == 1) {
    save_safetensors((root / "model.safetensors").string(), shards[0], metadata);
  } else {
    json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      char file[64];
      std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      save_safetensors((root / file).string(), shards[s], metadata);
      for (const auto& [name, t] : shards[s]) index["weight_map"][name] = file;
    }
    write_file_atomic((root / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  // config.json: the one we loaded, with the stored dtype updated.
  json config = model.config().source;
  if (!config.is_object() || config.empty())
    throw std::runtime_error(dir +
                             ": save_qwen25vl: the model has no source config.json to write back");
  for (const char* key : {"torch_dtype", "dtype"})
    if (config.contains(key)) config[key] = hf_dtype_name(options.dtype);
  if (!config.contains("torch_dtype") && !config.contains("dtype"))
    config["torch_dtype"] = hf_dtype_name(options.dtype);
  write_file_atomic((root / "config.json").string(), config.dump(2) + "\n");
  if (!options.source_dir.empty() && fs::absolute(options.source_dir) != fs::absolute(root)) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                          "preprocessor_config.json", "processor_config.json", "chat_template.json",
                          "chat_template.jinja", "generation_config.json"}) {
      fs::path src = fs::path(options.source_dir) / f;
      if (fs::exists(src)) write_file_atomic((root / f).string(), read_text_file(src.string()));
    }
  }
}

}  // namespace visplay
