// Model checkpoints: a folder with model.safetensors (Hugging Face names for
// the decoder, vision./projector. for the rest), config.json and, when
// given, the tokenizer file copied beside them. A Hugging Face Qwen2 folder
// (one model.safetensors, or shards listed in model.safetensors.index.json)
// loads as a text-only model.
#pragma once
#include <string>

#include "model/vlm.h"

namespace visplay {

// Writes DIR/model.safetensors and DIR/config.json (creating DIR), and copies
// tokenizer_file (if not empty) to DIR/<its file name>. Each file is written
// atomically. Weights are saved in their own dtype (f32), bit for bit.
void save_checkpoint(const std::string& dir, const VLM& model,
                     const std::string& tokenizer_file = "");

// Reads DIR/config.json and the weights. Every tensor the config needs must be
// present with the right shape and a floating dtype (F32, BF16 or F64; stored
// values are converted to f32); the first problem is reported with the file
// and tensor name. Unknown tensors are an error too, except rotary caches and
// an lm_head.weight beside tied embeddings.
VLM load_checkpoint(const std::string& dir);

// Loads weights from one .safetensors file into an existing model, with the
// same checks as load_checkpoint.
void load_weights(VLM& model, const std::string& safetensors_path);

}  // namespace visplay
