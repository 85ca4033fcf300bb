// The `visplay` binary on bad input files: each must end with exit status 1 and one
// "visplay: error:" line naming the file and what is wrong, never a crash (a signal
// gives no exit status here) or a silent success. And a benchmark with malformed lines
// is still scored on its good lines, with the bad ones reported by line number.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal (a crash)
  std::string output;  // stdout and stderr together
};

RunResult run(const std::string& args, const std::string& stdin_text = "") {
  const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path() / "visplay";
  if (!fs::exists(bin)) {
    ADD_FAILURE() << "the visplay binary is not built: " << bin << " (build the visplay target)";
    return {};
  }
  std::string command = "OMP_NUM_THREADS=1 " + bin.string() + " " + args;
  if (!stdin_text.empty()) {
    fs::path input =
        fs::temp_directory_path() / ("visplay_cli_bad_stdin_" + std::to_string(getpid()));
    std::ofstream(input) << stdin_text;
    command += " < " + input.string();
  }
  command += " 2>&1";
  RunResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void expect_failure(const RunResult& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("visplay: error:"), std::string::npos) << r.output;
  for (const std::string& p : parts)
    EXPECT_NE(r.output.find(p), std::string::npos) << "missing '" << p << "' in:\n" << r.output;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One tiny model and one labeled benchmark, made once with the binary itself.
class CliBadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("visplay_cli_bad_input_" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    RunResult p = run("pretrain --out " + (root_ / "model").string() +
                      " --size tiny --steps 1 --batch 1 --eval-every 0 --seed 4");
    ASSERT_EQ(p.exit_code, 0) << p.output;
    RunResult w =
        run("world --out " + (root_ / "bench").string() + " --scenes 4 --seed 6 --labeled");
    ASSERT_EQ(w.exit_code, 0) << w.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  // A copy of the model folder with one file replaced.
  std::string model_with(const std::string& file, const std::string& content) {
    fs::path dir = root_ / ("model_" + std::to_string(copies_++));
    fs::copy(root_ / "model", dir, fs::copy_options::recursive);
    std::ofstream(dir / file, std::ios::binary | std::ios::trunc) << content;
    return dir.string();
  }
  static fs::path root_;
  static int copies_;
};
fs::path CliBadInput::root_;
int CliBadInput::copies_ = 0;

TEST_F(CliBadInput, CorruptEmptyAndHugeImages) {
  std::string model = (root_ / "model").string();
  fs::path png = root_ / "bench" / "images" / "000000.png";
  std::string good = read_file(png);
  ASSERT_GT(good.size(), 60u);
  // The good image works, so the failures below are the files' fault.
  RunResult ok = run("generate --model " + model + " --image " + png.string() +
                     " --prompt \"how many objects are there?\" --max-new-tokens 2 --greedy");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;

  std::ofstream(root_ / "empty.png", std::ios::binary) << "";
  expect_failure(run("generate --model " + model + " --image " + (root_ / "empty.png").string() +
                     " --prompt \"how many objects are there?\" --max-new-tokens 2"),
                 {"empty.png", "empty file"});
  std::ofstream(root_ / "cut.png", std::ios::binary) << good.substr(0, good.size() / 2);
  expect_failure(run("generate --model " + model + " --image " + (root_ / "cut.png").string() +
                     " --prompt \"how many objects are there?\" --max-new-tokens 2"),
                 {"cut.png", "invalid PNG"});
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x55;
  std::ofstream(root_ / "flipped.png", std::ios::binary) << flipped;
  expect_failure(run("generate --model " + model + " --image " + (root_ / "flipped.png").string() +
                     " --prompt \"how many objects are there?\" --max-new-tokens 2"),
                 {"flipped.png", "invalid PNG"});
  // 20000 x 20000 in the header: refused from the header alone.
  std::string huge = good;
  for (size_t at : {size_t(16), size_t(20)}) {
    huge[at] = 0;
    huge[at + 1] = 0;
    huge[at + 2] = static_cast<char>(20000 >> 8);
    huge[at + 3] = static_cast<char>(20000 & 0xFF);
  }
  std::ofstream(root_ / "huge.png", std::ios::binary) << huge;
  expect_failure(run("generate --model " + model + " --image " + (root_ / "huge.png").string() +
                     " --prompt \"how many objects are there?\" --max-new-tokens 2"),
                 {"huge.png", "20000x20000", "limit"});
  std::ofstream(root_ / "cut.jpg", std::ios::binary)
      << std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF", 10);
  expect_failure(run("generate --model " + model + " --image " + (root_ / "cut.jpg").string() +
                     " --prompt \"how many objects are there?\" --max-new-tokens 2"),
                 {"cut.jpg", "JPEG"});
}

TEST_F(CliBadInput, BrokenCheckpointFiles) {
  std::string bench = (root_ / "bench").string();
  std::string weights = read_file(root_ / "model" / "model.safetensors");
  ASSERT_GT(weights.size(), 1000u);
  // Cut in the data section: a tensor's offsets run past the end.
  std::string cut = model_with("model.safetensors", weights.substr(0, weights.size() - 100));
  expect_failure(run("eval --model " + cut + " --bench " + bench),
                 {"model.safetensors", "out of range"});
  // Header length field wrecked.
  std::string bad_length = weights;
  bad_length[6] = '\x7f';
  std::string length = model_with("model.safetensors", bad_length);
  expect_failure(run("eval --model " + length + " --bench " + bench),
                 {"model.safetensors", "header length", "exceeds"});
  // A config whose sizes no longer match the stored tensors: the first mismatch is named.
  json config = json::parse(read_file(root_ / "model" / "config.json"));
  config["intermediate_size"] = config["intermediate_size"].get<int64_t>() + 2;
  std::string shape = model_with("config.json", config.dump());
  expect_failure(run("eval --model " + shape + " --bench " + bench),
                 {"model.safetensors", "mlp.", "has shape", "the config expects"});
  // Nonsense config values name config.json and the field.
  json heads = json::parse(read_file(root_ / "model" / "config.json"));
  heads["num_attention_heads"] = heads["hidden_size"].get<int64_t>() + 1;
  expect_failure(
      run("eval --model " + model_with("config.json", heads.dump()) + " --bench " + bench),
      {"config.json", "\"hidden_size\"", "num_attention_heads"});
  json negative = json::parse(read_file(root_ / "model" / "config.json"));
  negative["vocab_size"] = -5;
  expect_failure(
      run("eval --model " + model_with("config.json", negative.dump()) + " --bench " + bench),
      {"config.json", "\"vocab_size\"", "positive"});
}

TEST_F(CliBadInput, TokenizerWithoutMerges) {
  json bpe = {
      {"pre_tokenizer", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", json::array()}}}};
  std::ofstream(root_ / "no_merges.json") << bpe.dump();
  expect_failure(run("tokenize --tokenizer " + (root_ / "no_merges.json").string(), "\"ab\"\n"),
                 {"no_merges.json", "merges"});
  // Decoding an id past 32 bits is an error, not id 1 after wrapping.
  expect_failure(run("tokenize --tokenizer shapeworld --decode", "[4294967297]\n"),
                 {"stdin line 1", "4294967297"});
}

TEST_F(CliBadInput, EvalScoresTheGoodLinesAndReportsTheBadOnes) {
  std::string model = (root_ / "model").string();
  fs::path bench = root_ / "bench_bad";
  fs::copy(root_ / "bench", bench, fs::copy_options::recursive);
  std::string questions = read_file(bench / "questions.jsonl");
  std::vector<std::string> lines;
  for (size_t at = 0; at < questions.size();) {
    size_t end = questions.find('\n', at);
    lines.push_back(questions.substr(at, end - at));
    at = end == std::string::npos ? questions.size() : end + 1;
  }
  ASSERT_EQ(lines.size(), 4u);
  // Lines 2 and 4 become malformed; 1, 3 and 5 stay good.
  std::ofstream(bench / "questions.jsonl", std::ios::trunc)
      << lines[0] << "\n{\"id\": \"broken\n"
      << lines[1] << "\n[\"not\", \"an object\"]\n"
      << lines[2] << "\n";
  RunResult strict = run("eval --model " + model + " --bench " + bench.string() + " --out " +
                         (root_ / "strict.json").string() + " --max-new-tokens 4");
  expect_failure(strict, {"questions.jsonl:2:", "2 malformed line(s)", "the 3 readable questions"});
  EXPECT_NE(strict.output.find("questions.jsonl:4:"), std::string::npos) << strict.output;
  // The good lines were still evaluated and the report lists the bad ones.
  json report = json::parse(read_file(root_ / "strict.json"));
  EXPECT_EQ(report["questions"].get<int>(), 3);
  ASSERT_EQ(report["skipped_lines"].size(), 2u);
  EXPECT_NE(report["skipped_lines"][0].get<std::string>().find("questions.jsonl:2: invalid JSON"),
            std::string::npos);
  EXPECT_NE(report["skipped_lines"][1].get<std::string>().find(
                "questions.jsonl:4: expected a JSON object"),
            std::string::npos);

  RunResult lenient = run("eval --model " + model + " --bench " + bench.string() +
                          " --max-new-tokens 4 --allow-bad-lines");
  EXPECT_EQ(lenient.exit_code, 0) << lenient.output;
  EXPECT_NE(lenient.output.find("warning: 2 malformed line(s)"), std::string::npos)
      << lenient.output;

  // Nothing readable at all is an error even with --allow-bad-lines.
  std::ofstream(bench / "questions.jsonl", std::ios::trunc) << "{oops\n";
  expect_failure(run("eval --model " + model + " --bench " + bench.string() + " --allow-bad-lines"),
                 {"no readable questions"});
}

}  // namespace
