// safetensors read/write and model checkpoints: bit-exact round trips, and a
// clear error for each kind of broken file.
#include "model/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/file_util.h"
#include "model/safetensors.h"
#include "tests/model/reference.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("visplay_model_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Raw bytes of a tensor, for bit-exact comparisons.
std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.numel() * dtype_size(c.dtype()));
}

// A file made of an 8-byte length, the given header text and `data_bytes` bytes.
std::string write_raw(const std::string& dir, const std::string& header, size_t data_bytes,
                      int64_t length_override = -1) {
  std::string path = dir + "/raw.safetensors";
  uint64_t n = length_override >= 0 ? static_cast<uint64_t>(length_override) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out += std::string(data_bytes, '\x11');
  std::ofstream(path, std::ios::binary) << out;
  return path;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << parts[0] << "'";
  } catch (const std::runtime_error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RoundTripIsBitExactForEveryDtype) {
  std::string dir = temp_dir("roundtrip");
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"a.f32", test::random_tensor({3, 5}, 1, DType::f32)},
      {"b.bf16", test::random_tensor({7}, 2, DType::bf16)},
      {"c.f64", test::random_tensor({2, 2, 3}, 3, DType::f64)},
      {"d.i32", Tensor::from_vector(std::vector<int32_t>{-5, 7, 1 << 30}, {3})},
      {"e.i64", Tensor::from_vector(std::vector<int64_t>{-(1LL << 40), 9}, {2, 1})},
      {"f.scalar", Tensor::from_vector(std::vector<float>{NAN}, {})},
      {"g.transposed", test::random_tensor({4, 3}, 4, DType::f32).transpose(0, 1)},
  };
  std::string path = dir + "/t.safetensors";
  save_safetensors(path, tensors, {{"note", "hello"}});
  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("note"), "hello");
  ASSERT_EQ(f.entries().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    Tensor back = f.load(name);
    EXPECT_EQ(back.dtype(), t.dtype()) << name;
    EXPECT_EQ(back.shape(), t.shape()) << name;
    EXPECT_EQ(bytes_of(back), bytes_of(t)) << name;
  }
  // Data starts 8-byte aligned, and no temporary file is left behind.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, BrokenFilesGiveClearErrors) {
  std::string dir = temp_dir("broken");
  auto open = [](const std::string& p) { return [p] { SafetensorsFile f(p); }; };
  {
    std::string p = dir + "/short.safetensors";
    std::ofstream(p, std::ios::binary) << "abc";
    expect_error(open(p), {p, "too short"});
  }
  expect_error(open(write_raw(dir, "{}", 0, 1000)), {"header length 1000 exceeds"});
  expect_error(open(write_raw(dir, "{not json", 0)), {"not valid JSON"});
  expect_error(
      open(write_raw(dir, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8)),
      {"tensor 'w'", "out of range"});
  expect_error(open(write_raw(dir, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
               {"tensor 'w'", "needs 12"});
  expect_error(open(write_raw(dir,
                              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              12)),
               {"'a' and 'b'", "overlapping"});
  expect_error(open(write_raw(dir, R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4)),
               {"tensor 'w'", "unsupported dtype F16"});
  expect_error(
      open(write_raw(dir, R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
      {"tensor 'w'", "non-integer"});
  expect_error(open(write_raw(dir, R"({"w":{"dtype":"F32","shape":[1]}})", 4)),
               {"tensor 'w'", "data_offsets"});
  expect_error(open(dir + "/absent.safetensors"), {"absent.safetensors", "cannot open"});
  // A valid file still reports a missing name clearly.
  std::string ok = write_raw(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  SafetensorsFile f(ok);
  expect_error([&] { f.load("v"); }, {"no tensor named 'v'"});
}

TEST(Checkpoint, RoundTripIsBitExactWithConfigAndTokenizer) {
  std::string dir = temp_dir("ckpt");
  VLM m(ref::tiny_vlm_config());
  m.init_weights(5);
  std::string tok = dir + "/tokenizer.json";
  write_file_atomic(tok, "{\"model\": {\"type\": \"WordLevel\"}}");
  std::string out = dir + "/out";
  save_checkpoint(out, m, tok);
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/config.json"));
  EXPECT_EQ(read_text_file(out + "/tokenizer.json"), read_text_file(tok));
  VLM back = load_checkpoint(out);
  EXPECT_EQ(config_to_json(back.config()), config_to_json(m.config()));
  ASSERT_EQ(back.params().names(), m.params().names());
  for (const std::string& n : m.params().names())
    EXPECT_EQ(bytes_of(back.params().get(n)), bytes_of(m.params().get(n))) << n;
  // Saving again over the same folder works and gives identical bytes.
  std::string first = read_text_file(out + "/model.safetensors");
  save_checkpoint(out, back);
  EXPECT_EQ(read_text_file(out + "/model.safetensors"), first);
}

// Saves the model's tensors with one of them changed by `edit` and expects
// load_checkpoint to fail naming it.
void expect_load_error(
    const std::string& name,
    const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit,
    const std::vector<std::string>& parts) {
  std::string dir = temp_dir("bad_" + name);
  VLM m(ref::tiny_vlm_config());
  m.init_weights(6);
  save_checkpoint(dir, m);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& n : m.params().names()) tensors.emplace_back(n, m.params().get(n));
  edit(tensors);
  save_safetensors(dir + "/model.safetensors", tensors);
  expect_error([&] { load_checkpoint(dir); }, parts);
}

TEST(Checkpoint, LoadingNamesTheFirstBadTensor) {
  expect_load_error("missing", [](auto& t) { t.erase(t.begin() + 5); },
                    {"missing tensor", "model.safetensors"});
  expect_load_error("shape",
                    [](auto& t) {
                      for (auto& [n, v] : t)
                        if (n == "model.layers.1.self_attn.k_proj.weight")
                          v = Tensor::zeros({32, 32});
                    },
                    {"model.layers.1.self_attn.k_proj.weight", "[32, 32]", "expects [16, 32]"});
  expect_load_error("dtype",
                    [](auto& t) {
                      for (auto& [n, v] : t)
                        if (n == "vision.pos_embed") v = Tensor::zeros(v.shape(), DType::i32);
                    },
                    {"vision.pos_embed", "dtype I32"});
  expect_load_error(
      "extra",
      [](auto& t) { t.emplace_back("model.layers.9.mlp.up_proj.weight", Tensor::zeros({2})); },
      {"unexpected tensor 'model.layers.9.mlp.up_proj.weight'"});
  // No weights at all.
  std::string dir = temp_dir("noweights");
  save_config(dir + "/config.json", ref::tiny_vlm_config());
  expect_error([&] { load_checkpoint(dir); }, {"no model.safetensors"});
}

TEST(Checkpoint, Bf16WeightsLoadAsF32) {
  std::string dir = temp_dir("bf16");
  VLM m(ref::tiny_vlm_config(true));
  m.init_weights(8);
  save_checkpoint(dir, m);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& n : m.params().names())
    tensors.emplace_back(n, m.params().get(n).to(DType::bf16));
  save_safetensors(dir + "/model.safetensors", tensors);
  VLM back = load_checkpoint(dir);
  for (const std::string& n : m.params().names()) {
    ASSERT_EQ(back.params().get(n).dtype(), DType::f32);
    EXPECT_EQ(back.params().get(n).to_vector<float>(),
              m.params().get(n).to(DType::bf16).to_vector<float>())
        << n;
  }
}

TEST(Config, RoundTripAndHuggingFaceNames) {
  VLMConfig c = ref::tiny_vlm_config();
  nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j["num_key_value_heads"], 2);
  EXPECT_EQ(j["image_token_id"], 39);
  EXPECT_EQ(j["vision_config"]["patch_size"], 4);
  std::string dir = temp_dir("config");
  save_config(dir + "/config.json", c);
  VLMConfig back = load_config(dir + "/config.json");
  EXPECT_EQ(config_to_json(back), j);
  EXPECT_EQ(back.vision.num_visual_tokens(), 4);
  EXPECT_FLOAT_EQ(back.vision.image_std[2], 0.3f);
}

TEST(Config, ValidationNamesTheBadField) {
  nlohmann::json good = config_to_json(ref::tiny_vlm_config());
  auto expect_bad = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& field,
                        const std::string& why) {
    SCOPED_TRACE(field + ": " + why);
    nlohmann::json j = good;
    edit(j);
    expect_error([&] { config_from_json(j, "cfg.json"); }, {"cfg.json", "\"" + field + "\"", why});
  };
  expect_bad([](auto& j) { j.erase("vocab_size"); }, "vocab_size", "missing");
  expect_bad([](auto& j) { j["hidden_size"] = "64"; }, "hidden_size", "expected an integer");
  expect_bad([](auto& j) { j["num_key_value_heads"] = 3; }, "num_key_value_heads",
             "does not divide");
  expect_bad([](auto& j) { j["hidden_size"] = 30; }, "hidden_size",
             "multiple of num_attention_heads");
  expect_bad([](auto& j) { j["rms_norm_eps"] = -1.0; }, "rms_norm_eps", "positive");
  expect_bad([](auto& j) { j["eos_token_id"] = 40; }, "eos_token_id", "outside the vocabulary");
  expect_bad([](auto& j) { j["tie_word_embeddings"] = 1; }, "tie_word_embeddings", "true or false");
  expect_bad([](auto& j) { j["vision_config"]["image_size"] = 18; }, "image_size",
             "multiple of patch_size");
  expect_bad([](auto& j) { j["vision_config"]["patch_size"] = 16; }, "spatial_merge_size",
             "patch grid 1");
  expect_bad([](auto& j) { j["vision_config"]["image_std"] = {1, 2}; }, "image_std", "3 numbers");
  expect_bad([](auto& j) { j.erase("image_token_id"); }, "image_token_id", "image pad token");
  expect_bad(
      [](auto& j) {
        j["rope_parameters"] = {{"rope_type", "yarn"}};
      },
      "rope_parameters", "yarn");
  std::string dir = temp_dir("badjson");
  write_file_atomic(dir + "/config.json", "{\"vocab_size\": ");
  expect_error([&] { load_config(dir + "/config.json"); }, {"config.json", "invalid JSON"});
}

TEST(Config, HuggingFaceQwen2ConfigLoadsAsTextOnly) {
  VLMConfig c =
      load_config(std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/qwen2_tiny/config.json");
  EXPECT_FALSE(c.has_vision);
  EXPECT_EQ(c.decoder.vocab_size, 256);
  EXPECT_EQ(c.decoder.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c.decoder.rope_theta, 100000.0);  // from rope_parameters
  EXPECT_FALSE(c.decoder.tie_word_embeddings);
}

TEST(ParamStore, InitIsSeededAndTyped) {
  ParamStore a;
  a.add("w", {200, 50}, Init::normal);
  a.add("norm", {7}, Init::ones);
  a.add("b", {9}, Init::zeros);
  ParamStore b = a.clone();
  Rng r1(3), r2(3), r3(4);
  a.initialize(r1);
  b.initialize(r2);
  EXPECT_EQ(a.get("w").to_vector<float>(), b.get("w").to_vector<float>());
  ParamStore c = a.clone();
  c.initialize(r3);
  EXPECT_NE(a.get("w").to_vector<float>(), c.get("w").to_vector<float>());
  std::vector<double> w = a.get("w").to_vector<double>();
  double mean = 0, var = 0;
  for (double x : w) mean += x;
  mean /= w.size();
  for (double x : w) var += (x - mean) * (x - mean);
  EXPECT_NEAR(std::sqrt(var / w.size()), 0.02, 0.001);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_EQ(a.get("norm").to_vector<float>(), std::vector<float>(7, 1.0f));
  EXPECT_EQ(a.get("b").to_vector<float>(), std::vector<float>(9, 0.0f));
  EXPECT_EQ(a.names(), (std::vector<std::string>{"w", "norm", "b"}));
  EXPECT_EQ(a.numel(), 200 * 50 + 7 + 9);
  expect_error([&] { a.add("w", {1}, Init::zeros); }, {"'w' added twice"});
  expect_error([&] { a.get("nope"); }, {"'nope' not found"});
}

}  // namespace
}  // namespace visplay
