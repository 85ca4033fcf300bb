// `visplay qwen25vl ...`: Qwen2.5-VL Hugging Face checkpoints (model/qwen25vl.h).
//   visplay qwen25vl convert --model DIR --out DIR [--dtype bf16|f32] [--max-shard-mb N]
//       loads a checkpoint directory and saves it again in the same layout (a
//       check that our loader and writer agree with transformers).
//   visplay qwen25vl generate --model DIR --image FILE --prompt TEXT [--max-new-tokens N]
//       [--greedy | --temperature T --top-p P --top-k K] [--seed S] [--system TEXT]
//       [--max-pixels N]
//       the instruct chat template with the image, decoded with the KV cache.
#include "model/qwen25vl.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/image.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "runtime/tensor.h"
#include "tools/cli/command.h"

namespace {

struct ConvertArgs {
  std::string model, out, dtype = "bf16";
  double max_shard_mb = 5 * 1024;
};

struct GenerateArgs {
  std::string model, image, prompt, system = "You are a helpful assistant.";
  int64_t max_new_tokens = 128, top_k = 0, max_pixels = 0;
  double temperature = 1.0, top_p = 1.0;
  uint64_t seed = 0;
  bool greedy = false;
};

void run_convert(const ConvertArgs& a) {
  visplay::DType dtype = a.dtype == "f32" ? visplay::DType::f32 : visplay::DType::bf16;
  visplay::Qwen25VL model = visplay::load_qwen25vl(a.model, dtype);
  visplay::Qwen25VLSaveOptions opt;
  opt.dtype = dtype;
  opt.max_shard_bytes = static_cast<int64_t>(a.max_shard_mb * 1024 * 1024);
  opt.source_dir = a.model;
  visplay::save_qwen25vl(a.out, model, opt);
  std::printf("saved %s (%lld parameters, %s)\n", a.out.c_str(),
              static_cast<long long>(model.params().numel()), a.dtype.c_str());
}

void run_generate(const GenerateArgs& a) {
  namespace fs = std::filesystem;
  auto t0 = std::chrono::steady_clock::now();
  visplay::Qwen25VL model = visplay::load_qwen25vl(a.model, visplay::DType::f32);
  std::unique_ptr<visplay::Tokenizer> tok =
      visplay::load_tokenizer((fs::path(a.model) / "tokenizer.json").string());
  visplay::Qwen25VLImageConfig icfg = visplay::load_qwen25vl_image_config(a.model);
  if (a.max_pixels > 0) icfg.max_pixels = std::max(a.max_pixels, icfg.min_pixels);
  visplay::Qwen25VLPixels px = visplay::qwen25vl_preprocess({visplay::load_image(a.image)}, icfg);
  const auto& g = px.grids[0];
  int64_t image_tokens = g[0] * g[1] * g[2] / (icfg.merge_size * icfg.merge_size);
  std::vector<int32_t> ids32 =
      tok->encode(visplay::qwen25vl_chat_prompt(a.prompt, {image_tokens}, a.system));
  std::vector<int64_t> ids(ids32.begin(), ids32.end());
  visplay::SamplingOptions opt;
  opt.greedy = a.greedy;
  opt.temperature = a.temperature;
  opt.top_k = a.top_k;
  opt.top_p = a.top_p;
  opt.max_new_tokens = a.max_new_tokens;
  for (int32_t stop : {tok->special_ids().im_end, tok->special_ids().eos})
    if (stop >= 0) opt.stop_tokens.push_back(stop);
  opt.stop_tokens.push_back(model.config().eos_token_id);
  auto t1 = std::chrono::steady_clock::now();
  std::vector<std::vector<int64_t>> out = visplay::qwen25vl_generate(
      model, visplay::Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())}),
      visplay::Tensor(), px.pixel_values, px.grids, opt, {a.seed});
  auto t2 = std::chrono::steady_clock::now();
  std::vector<int32_t> gen(out[0].begin(), out[0].end());
  std::printf("%s\n", tok->decode(gen).c_str());
  std::fprintf(
      stderr,
      "image %lldx%lld patches, prompt %zu tokens, %zu new tokens; load %.1f s, generate %.1f s\n",
      static_cast<long long>(g[1]), static_cast<long long>(g[2]), ids.size(), gen.size(),
      std::chrono::duration<double>(t1 - t0).count(),
      std::chrono::duration<double>(t2 - t1).count());
}

void setup_qwen25vl(CLI::App& app) {
  CLI::App* cmd =
      app.add_subcommand("qwen25vl", "Qwen2.5-VL Hugging Face checkpoints: convert, generate");
  cmd->require_subcommand(1);

  auto conv = std::make_shared<ConvertArgs>();
  CLI::App* c =
      cmd->add_subcommand("convert", "Load a Qwen2.5-VL directory and save it in the same layout");
  c->add_option("--model", conv->model, "Hugging Face directory (config.json, safetensors)")
      ->required();
  c->add_option("--out", conv->out, "Output directory")->required();
  c->add_option("--dtype", conv->dtype, "Stored dtype")->check(CLI::IsMember({"bf16", "f32"}));
  c->add_option("--max-shard-mb", conv->max_shard_mb, "Largest shard in MiB")
      ->check(CLI::Range(0.01, 1048576.0));
  c->callback([conv] { run_convert(*conv); });

  auto gen = std::make_shared<GenerateArgs>();
  CLI::App* g =
      cmd->add_subcommand("generate", "Answer a prompt about an image with the chat template");
  g->add_option("--model", gen->model,
                "Hugging Face directory (config.json, safetensors, tokenizer.json)")
      ->required();
  g->add_option("--image", gen->image, "PNG or JPEG")->required();
  g->add_option("--prompt", gen->prompt, "User text after the image")->required();
  g->add_option("--system", gen->system, "System message");
  g->add_option("--max-pixels", gen->max_pixels,
                "Cap the image area (pixels) below preprocessor_config.json's max_pixels")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  g->add_option("--max-new-tokens", gen->max_new_tokens)->check(CLI::Range(1, 1 << 20));
  g->add_option("--temperature", gen->temperature);
  g->add_option("--top-k", gen->top_k);
  g->add_option("--top-p", gen->top_p);
  g->add_option("--seed", gen->seed);
  g->add_flag("--greedy", gen->greedy, "Argmax decoding");
  g->callback([gen] { run_generate(*gen); });
}

}  // namespace

VISPLAY_COMMAND(setup_qwen25vl);
