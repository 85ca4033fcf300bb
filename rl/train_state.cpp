#include "rl/train_state.h"

#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "model/safetensors.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace visplay::rl {
namespace {

constexpr const char* kFormat = "visplay-train-state-v1";

// The model's name of every optimizer parameter, matched by storage (the optimizer holds
// handles to the model's tensors). Throws when one is not a parameter of the model.
std::vector<std::string> optimizer_names(const ParamStore& params, const AdamW& optimizer) {
  std::map<std::pair<const void*, int64_t>, std::string> by_storage;
  for (const std::string& name : params.names()) {
    const Tensor& t = params.get(name);
    by_storage[{t.storage().get(), t.offset()}] = name;
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < optimizer.params().size(); ++i) {
    const Tensor& p = optimizer.params()[i];
    auto it = by_storage.find({p.storage().get(), p.offset()});
    if (it == by_storage.end()) {
      throw std::runtime_error("save_train_state: optimizer parameter " + std::to_string(i) + " " +
                               p.str() + " is not a parameter of the model");
    }
    names.push_back(it->second);
  }
  return names;
}

// Copies the stored tensor `key` into `target` after checking its shape and dtype.
void load_into(const SafetensorsFile& file, const std::string& key, const Tensor& target) {
  if (!file.contains(key)) {
    throw std::runtime_error(file.path() + ": training state has no tensor '" + key +
                             "' (expected " + shape_str(target.shape()) + ")");
  }
  const SafetensorsEntry& e = file.entry(key);
  if (e.shape != target.shape()) {
    throw std::runtime_error(file.path() + ": tensor '" + key + "' has shape " +
                             shape_str(e.shape) + " but the model expects " +
                             shape_str(target.shape()));
  }
  if (e.dtype != target.dtype()) {
    throw std::runtime_error(file.path() + ": tensor '" + key + "' has dtype " + e.dtype_name +
                             ", expected " + safetensors_dtype_name(target.dtype()) +
                             " (a state is restored bit for bit, never converted)");
  }
  target.detach().copy_(file.load(key));
}

nlohmann::json parse_info(const SafetensorsFile& file) {
  const auto& meta = file.metadata();
  auto format = meta.find("format");
  if (format == meta.end() || format->second != kFormat) {
    throw std::runtime_error(
        file.path() + ": not a visplay training state (metadata \"format\" is " +
        (format == meta.end() ? std::string("missing") : "'" + format->second + "'") +
        ", expected '" + kFormat + "')");
  }
  auto info = meta.find("info");
  if (info == meta.end()) throw std::runtime_error(file.path() + ": metadata has no \"info\"");
  try {
    nlohmann::json j = nlohmann::json::parse(info->second);
    if (!j.is_object()) throw std::runtime_error("not a JSON object");
    return j;
  } catch (const std::exception& e) {
    throw std::runtime_error(file.path() + ": metadata \"info\" is not a JSON object: " + e.what());
  }
}

template <class T>
T field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw std::runtime_error(where + ": field \"" + key + "\" is missing");
  try {
    return j.at(key).get<T>();
  } catch (const std::exception& e) {
    throw std::runtime_error(where + ": field \"" + key + "\" = " + j.at(key).dump() +
                             " has the wrong type: " + e.what());
  }
}

}  // namespace

void save_train_state(const std::string& path, const nlohmann::json& info, const ParamStore* model,
                      AdamW* optimizer) {
  if (optimizer && !model) {
    throw std::runtime_error("save_train_state: an optimizer state needs its model");
  }
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> meta = {{"format", kFormat}, {"info", info.dump()}};
  if (model) {
    const ParamStore& params = *model;
    for (const std::string& name : params.names()) {
      tensors.emplace_back("weights." + name, params.get(name));
    }
    meta["weights"] = "1";
  }
  if (optimizer) {
    const std::vector<std::string> names = optimizer_names(*model, *optimizer);
    for (size_t i = 0; i < names.size(); ++i) {
      tensors.emplace_back("adamw.exp_avg." + names[i], optimizer->exp_avg()[i]);
      tensors.emplace_back("adamw.exp_avg_sq." + names[i], optimizer->exp_avg_sq()[i]);
      if (optimizer->master()[i].defined())
        tensors.emplace_back("adamw.master." + names[i], optimizer->master()[i]);
    }
    meta["adamw_step"] = std::to_string(optimizer->steps());
    meta["adamw_params"] = std::to_string(names.size());
  }
  save_safetensors(path, tensors, meta);
}

nlohmann::json read_train_state_info(const std::string& path) {
  SafetensorsFile file(path);
  return parse_info(file);
}

void load_train_state(const std::string& path, ParamStore* model, AdamW* optimizer) {
  SafetensorsFile file(path);
  parse_info(file);
  const auto& meta = file.metadata();
  if (model) {
    if (!meta.count("weights"))
      throw std::runtime_error(path + ": training state holds no weights");
    ParamStore& params = *model;
    for (const std::string& name : params.names()) {
      load_into(file, "weights." + name, params.get(name));
    }
  }
  if (optimizer) {
    auto step = meta.find("adamw_step");
    auto count = meta.find("adamw_params");
    if (step == meta.end() || count == meta.end()) {
      throw std::runtime_error(path + ": training state holds no optimizer state");
    }
    if (!model) throw std::runtime_error("load_train_state: an optimizer state needs its model");
    const std::vector<std::string> names = optimizer_names(*model, *optimizer);
    if (count->second != std::to_string(names.size())) {
      throw std::runtime_error(path + ": optimizer state has " + count->second +
                               " parameters, the optimizer " + std::to_string(names.size()) +
                               " (was grpo.train_vision_tower changed?)");
    }
    for (size_t i = 0; i < names.size(); ++i) {
      load_into(file, "adamw.exp_avg." + names[i], optimizer->exp_avg()[i]);
      load_into(file, "adamw.exp_avg_sq." + names[i], optimizer->exp_avg_sq()[i]);
      // The f32 master holds what the bf16 weights rounded away: rebuilding it from them
      // would not continue the run, so a state without it is an error.
      if (optimizer->master()[i].defined()) {
        const std::string key = "adamw.master." + names[i];
        if (!file.contains(key)) {
          throw std::runtime_error(path + ": training state has no f32 master weights '" + key +
                                   "' (saved without grpo.master_weights?), which the "
                                   "mixed-precision optimizer needs to resume exactly");
        }
        load_into(file, key, optimizer->master()[i]);
      }
    }
    try {
      optimizer->set_steps(std::stoll(step->second));
    } catch (const std::exception&) {
      throw std::runtime_error(path + ": metadata \"adamw_step\" = '" + step->second +
                               "' is not an integer");
    }
  }
}

nlohmann::json silver_set_to_json(const SilverSet& set) {
  nlohmann::json questions = nlohmann::json::array();
  for (const SilverQuestion& q : set.questions) {
    nlohmann::json votes = nlohmann::json::array();
    for (const auto& v : q.votes) votes.push_back(v ? nlohmann::json(*v) : nlohmann::json(nullptr));
    questions.push_back(
        {{"image", q.image},
         {"output", q.output},
         {"valid", q.valid},
         {"question", q.question},
         {"has_label", q.has_label},
         {"label", q.label},
         {"confidence", q.confidence},
         {"kept", q.kept},
         {"votes", votes},
         {"greedy", q.greedy ? nlohmann::json(*q.greedy) : nlohmann::json(nullptr)}});
  }
  return {{"questions", questions},
          {"kept", set.kept},
          {"confidence_histogram", set.confidence_histogram},
          {"seconds", set.seconds}};
}

SilverSet silver_set_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw std::runtime_error(where + ": silver set is not a JSON object");
  SilverSet set;
  set.kept = field<int64_t>(j, "kept", where);
  set.confidence_histogram = field<std::vector<int64_t>>(j, "confidence_histogram", where);
  set.seconds = field<double>(j, "seconds", where);
  if (!j.contains("questions") || !j["questions"].is_array()) {
    throw std::runtime_error(where + ": field \"questions\" is missing or not an array");
  }
  for (size_t i = 0; i < j["questions"].size(); ++i) {
    const nlohmann::json& x = j["questions"][i];
    const std::string at = where + ": questions[" + std::to_string(i) + "]";
    if (!x.is_object()) throw std::runtime_error(at + " is not an object");
    SilverQuestion q;
    q.image = field<int64_t>(x, "image", at);
    q.output = field<std::string>(x, "output", at);
    q.valid = field<bool>(x, "valid", at);
    q.question = field<std::string>(x, "question", at);
    q.has_label = field<bool>(x, "has_label", at);
    q.label = field<std::string>(x, "label", at);
    q.confidence = field<double>(x, "confidence", at);
    q.kept = field<bool>(x, "kept", at);
    if (!x.contains("votes") || !x["votes"].is_array()) {
      throw std::runtime_error(at + ": field \"votes\" is missing or not an array");
    }
    for (const nlohmann::json& v : x["votes"]) {
      if (v.is_null()) {
        q.votes.emplace_back(std::nullopt);
      } else if (v.is_string()) {
        q.votes.emplace_back(v.get<std::string>());
      } else {
        throw std::runtime_error(at + ": a vote is neither a string nor null: " + v.dump());
      }
    }
    if (x.contains("greedy") && x["greedy"].is_string()) q.greedy = x["greedy"].get<std::string>();
    set.questions.push_back(std::move(q));
  }
  return set;
}

int cpu_thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace visplay::rl
