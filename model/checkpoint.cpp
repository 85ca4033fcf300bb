#include "model/checkpoint.h"

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <vector>

#include "model/file_util.h"
#include "model/safetensors.h"

namespace visplay {

namespace fs = std::filesystem;

void save_checkpoint(const std::string& dir, const VLM& model, const std::string& tokenizer_file) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(dir + ": cannot create folder: " + ec.message());
  std::vector<std::pair<std::string, Tensor>> tensors;
  const ParamStore& p = model.params();
  for (const std::string& name : p.names()) tensors.emplace_back(name, p.get(name));
  save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  save_config((fs::path(dir) / "config.json").string(), model.config());
  if (!tokenizer_file.empty()) {
    fs::path target = fs::path(dir) / fs::path(tokenizer_file).filename();
    if (fs::absolute(target) != fs::absolute(tokenizer_file))
      write_file_atomic(target.string(), read_text_file(tokenizer_file));
  }
}

namespace {

bool ignorable(const std::string& name, const VLMConfig& config) {
  if (name.size() >= 20 && name.compare(name.size() - 20, 20, "rotary_emb.inv_freq") == 0)
    return true;
  return name == "lm_head.weight" && config.decoder.tie_word_embeddings;
}

// Checks every file's tensors against the model's parameters and copies them
// in (converting floating dtypes to the parameter's f32).
void load_from_files(VLM& model, const std::vector<std::unique_ptr<SafetensorsFile>>& files) {
  ParamStore& p = model.params();
  std::set<std::string> found;
  for (const auto& f : files) {
    for (const SafetensorsEntry& e : f->entries()) {
      if (!p.contains(e.name)) {
        if (ignorable(e.name, model.config())) continue;
        throw std::runtime_error(f->path() + ": unexpected tensor '" + e.name + "' " +
                                 e.dtype_name + " " + shape_str(e.shape) +
                                 " (not a parameter of this config)");
      }
      Tensor& param = p.get(e.name);
      if (!is_floating(e.dtype))
        throw std::runtime_error(f->path() + ": tensor '" + e.name + "' has dtype " + e.dtype_name +
                                 ", expected a floating type (F32, BF16 or F64)");
      if (e.shape != param.shape())
        throw std::runtime_error(f->path() + ": tensor '" + e.name + "' has shape " +
                                 shape_str(e.shape) + " but the config expects " +
                                 shape_str(param.shape()));
      if (!found.insert(e.name).second)
        throw std::runtime_error(f->path() + ": tensor '" + e.name +
                                 "' appears in more than one file");
    }
  }
  for (const std::string& name : p.names())
    if (!found.count(name))
      throw std::runtime_error((files.size() == 1 ? files[0]->path() : std::string("checkpoint")) +
                               ": missing tensor '" + name + "' (expected f32 " +
                               shape_str(p.get(name).shape()) + ")");
  for (const auto& f : files)
    for (const SafetensorsEntry& e : f->entries()) {
      if (!p.contains(e.name)) continue;
      Tensor stored = f->load(e.name);
      Tensor& param = p.get(e.name);
      // Copy into the existing tensor (converting the dtype), so handles held
      // elsewhere (an optimizer's parameter list) see the loaded values.
      param.detach().copy_(stored);
    }
}

}  // namespace

void load_weights(VLM& model, const std::string& safetensors_path) {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  files.push_back(std::make_unique<SafetensorsFile>(safetensors_path));
  load_from_files(model, files);
}

VLM load_checkpoint(const std::string& dir) {
  fs::path root(dir);
  if (!fs::is_directory(root)) throw std::runtime_error(dir + ": not a folder");
  VLM model(load_config((root / "config.json").string()));
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  fs::path single = root / "model.safetensors", index = root / "model.safetensors.index.json";
  if (fs::exists(single)) {
    files.push_back(std::make_unique<SafetensorsFile>(single.string()));
  } else if (fs::exists(index)) {
    // Sharded Hugging Face checkpoint: the index's weight_map names the shards.
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(index.string()));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(index.string() + ": invalid JSON: " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw std::runtime_error(index.string() + ": field \"weight_map\": missing or not an object");
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw std::runtime_error(index.string() + ": weight_map entry '" + it.key() +
                                 "' is not a file name");
      shards.insert(it.value().get<std::string>());
    }
    for (const std::string& s : shards)
      files.push_back(std::make_unique<SafetensorsFile>((root / s).string()));
  } else {
    throw std::runtime_error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  load_from_files(model, files);
  return model;
}

}  // namespace visplay
