// Crash-safe training state for `visplay evolve` and `visplay pretrain` (docs/reliability.md).
//
// One safetensors file holds everything a killed run needs to continue bit-exactly:
//   weights.<name>          the trained model's parameters (their dtype, bit for bit)
//   adamw.exp_avg.<name>    AdamW first moments of the optimizer's parameters
//   adamw.exp_avg_sq.<name> AdamW second moments
//   adamw.master.<name>     the f32 master copy of a bf16 parameter (AdamWOptions::master_weights)
//   __metadata__            format tag, the AdamW step count and `info`: a JSON document with
//                           the loop position (iteration, phase, step, data position), RNG
//                           stream states, counters and whatever else the loop needs.
// The file is written through model/file_util's write_file_atomic (temporary file, fsync,
// rename, fsync of the folder): after a crash at any instant the previous complete state or
// the new complete one is on disk, never a mix.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "model/vlm.h"
#include "rl/role_rewards.h"
#include "runtime/optim.h"

namespace visplay::rl {

// Writes the state file. `model` and `optimizer` may be null (a loop position between
// training phases has no optimizer); optimizer parameters must be parameters of `model`.
// `model`: the trained model's parameters (a PolicyModel's params()).
void save_train_state(const std::string& path, const nlohmann::json& info, const ParamStore* model,
                      AdamW* optimizer);
inline void save_train_state(const std::string& path, const nlohmann::json& info, const VLM* model,
                             AdamW* optimizer) {
  save_train_state(path, info, model ? &model->params() : nullptr, optimizer);
}

// The info document of a state file. Throws naming the file when it is not a visplay training
// state (wrong format tag, unreadable metadata).
nlohmann::json read_train_state_info(const std::string& path);

// Loads the state's weights into `model` (in place: handles held by a trainer stay valid) and
// the moments and step into `optimizer` (either may be null). Every tensor must be present
// with the expected shape and dtype; the first problem is an error naming the file and tensor.
void load_train_state(const std::string& path, ParamStore* model, AdamW* optimizer);
inline void load_train_state(const std::string& path, VLM* model, AdamW* optimizer) {
  load_train_state(path, model ? &model->params() : nullptr, optimizer);
}

// The silver-label set as JSON and back, exactly (doubles round-trip). from_json throws naming
// `where` and the field on a malformed document.
nlohmann::json silver_set_to_json(const SilverSet& set);
SilverSet silver_set_from_json(const nlohmann::json& j, const std::string& where);

// The OpenMP thread count the CPU kernels use (1 without OpenMP): results are bit-exact across
// a restart only with the same count, so states record it.
int cpu_thread_count();

}  // namespace visplay::rl
