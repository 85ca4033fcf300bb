// `visplay generate --model DIR --image FILE --prompt TEXT [-n N] [--temperature T] ...`:
// loads a checkpoint folder (config.json, model.safetensors, tokenizer.json),
// puts the image's visual tokens in front of the prompt (inside the chat
// template when the vocabulary has <|im_start|>), samples N continuations
// that share one prefilled prompt, and prints them.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/image.h"
#include "model/sampler.h"
#include "tools/cli/command.h"

#if __has_include("model/tokenizer.h")
#include "model/tokenizer.h"
#define VISPLAY_GENERATE_HAS_TOKENIZER 1
#endif

namespace {

struct GenerateArgs {
  std::string model_dir, image, prompt, prompt_ids;
  int64_t n = 1;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  int64_t max_new_tokens = 64;
  uint64_t seed = 0;
  bool greedy = false;
  bool raw = false;
  bool show_ids = false;
};

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    try {
      size_t used = 0;
      ids.push_back(std::stoll(word, &used));
      if (used != word.size()) throw std::invalid_argument(word);
    } catch (const std::exception&) {
      throw std::runtime_error("--prompt-ids: '" + word + "' is not an integer token id");
    }
  }
  return ids;
}

void run_generate(const GenerateArgs& a) {
  namespace fs = std::filesystem;
  visplay::VLM model = visplay::load_checkpoint(a.model_dir);
  const visplay::VLMConfig& c = model.config();
  std::vector<int64_t> stop;
  if (c.eos_token_id >= 0) stop.push_back(c.eos_token_id);

  // The vision block: <vision_start> <image_pad> x T <vision_end>.
  std::vector<int64_t> vision_block;
  visplay::Tensor pixels;
  if (!a.image.empty()) {
    if (!c.has_vision)
      throw std::runtime_error(a.model_dir + ": this model has no vision tower; drop --image");
    const visplay::VisionConfig& v = c.vision;
    std::vector<float> chw = visplay::load_image_for_model(a.image, static_cast<int>(v.image_size),
                                                           v.image_mean.data(), v.image_std.data());
    pixels = visplay::Tensor::from_vector(chw, {3, v.image_size, v.image_size});
    if (c.vision_start_token_id >= 0) vision_block.push_back(c.vision_start_token_id);
    for (int64_t t = 0; t < v.num_visual_tokens(); ++t)
      vision_block.push_back(c.image_pad_token_id);
    if (c.vision_end_token_id >= 0) vision_block.push_back(c.vision_end_token_id);
  }

  std::vector<int64_t> ids;
  std::function<std::string(const std::vector<int64_t>&)> detokenize =
      [](const std::vector<int64_t>& t) {
        std::string s;
        for (int64_t id : t) s += (s.empty() ? "" : " ") + std::to_string(id);
        return s;
      };
#ifdef VISPLAY_GENERATE_HAS_TOKENIZER
  std::shared_ptr<visplay::Tokenizer> tok;
  if (fs::exists(fs::path(a.model_dir) / "tokenizer.json") ||
      fs::exists(fs::path(a.model_dir) / "encoder.json"))
    tok = visplay::load_tokenizer(a.model_dir);
  if (tok) {
    const visplay::SpecialTokenIds& sp = tok->special_ids();
    for (int32_t s : {sp.eos, sp.im_end})
      if (s >= 0) stop.push_back(s);
    detokenize = [tok](const std::vector<int64_t>& t) {
      std::vector<int32_t> ids32(t.begin(), t.end());
      return tok->decode(ids32);
    };
  }
#endif
  if (!a.prompt_ids.empty()) {
    ids = parse_ids(a.prompt_ids);
    ids.insert(ids.begin(), vision_block.begin(), vision_block.end());
  } else {
#ifdef VISPLAY_GENERATE_HAS_TOKENIZER
    if (!tok)
      throw std::runtime_error(a.model_dir +
                               ": no tokenizer.json to encode --prompt (or pass --prompt-ids)");
    auto encode = [&](const std::string& s) {
      std::vector<int32_t> e = tok->encode(s);
      return std::vector<int64_t>(e.begin(), e.end());
    };
    const visplay::SpecialTokenIds& sp = tok->special_ids();
    bool chat = !a.raw && sp.im_start >= 0 && sp.im_end >= 0;
    auto append = [&](const std::vector<int64_t>& part) {
      ids.insert(ids.end(), part.begin(), part.end());
    };
    if (chat) {
      ids.push_back(sp.im_start);
      append(encode("user\n"));
    }
    append(vision_block);
    append(encode(a.prompt));
    if (chat) {
      ids.push_back(sp.im_end);
      append(encode("\n"));
      ids.push_back(sp.im_start);
      append(encode("assistant\n"));
    }
#else
    throw std::runtime_error(
        "this build has no tokenizer (model/tokenizer.h); pass --prompt-ids instead of --prompt");
#endif
  }
  if (ids.empty()) throw std::runtime_error("the prompt is empty");
  for (int64_t id : ids)
    if (id < 0 || id >= c.decoder.vocab_size)
      throw std::runtime_error("prompt token id " + std::to_string(id) +
                               " is outside the vocabulary of " +
                               std::to_string(c.decoder.vocab_size));

  visplay::SamplingOptions opt;
  opt.greedy = a.greedy;
  opt.temperature = a.temperature;
  opt.top_k = a.top_k;
  opt.top_p = a.top_p;
  opt.max_new_tokens = a.max_new_tokens;
  opt.stop_tokens = stop;
  visplay::PromptInput prompt{ids, pixels};
  std::vector<visplay::Generation> out =
      visplay::generate(model, {prompt}, a.n, opt, visplay::derive_seeds(a.seed, a.n));
  for (size_t i = 0; i < out.size(); ++i) {
    const visplay::Generation& g = out[i];
    double total = 0;
    for (float lp : g.logprobs) total += lp;
    std::printf("[%zu] %s\n", i, detokenize(g.tokens).c_str());
    if (a.show_ids) {
      std::printf("    ids:");
      for (int64_t t : g.tokens) std::printf(" %lld", static_cast<long long>(t));
      std::printf("\n");
    }
    std::printf("    (%zu tokens, %s, sum logprob %.4f)\n", g.tokens.size(),
                g.stopped ? "stopped" : "max length", total);
  }
}

}  // namespace

static void setup_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Sample continuations of an image + text prompt");
  cmd->add_option("--model", args->model_dir,
                  "Checkpoint folder (config.json, model.safetensors, tokenizer)")
      ->required();
  cmd->add_option("--image", args->image, "Image file (PNG or JPEG)");
  cmd->add_option("--prompt", args->prompt, "Prompt text");
  cmd->add_option("--prompt-ids", args->prompt_ids,
                  "Prompt as space-separated token ids (instead of --prompt)");
  cmd->add_option("-n", args->n, "Number of samples")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", args->temperature, "Sampling temperature (0 = greedy)");
  cmd->add_option("--top-k", args->top_k, "Keep the k most likely tokens (0 = all)");
  cmd->add_option("--top-p", args->top_p, "Nucleus sampling mass (1 = all)");
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "Tokens to generate at most");
  cmd->add_option("--seed", args->seed, "Base seed (sample i uses a seed derived from it)");
  cmd->add_flag("--greedy", args->greedy, "Argmax decoding");
  cmd->add_flag("--raw", args->raw, "No chat template around the prompt");
  cmd->add_flag("--show-ids", args->show_ids, "Also print the generated token ids");
  cmd->callback([args] {
    if (args->prompt.empty() == args->prompt_ids.empty())
      throw std::runtime_error("generate: give exactly one of --prompt and --prompt-ids");
    run_generate(*args);
  });
}
VISPLAY_COMMAND(setup_generate);
