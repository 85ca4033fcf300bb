// The real Qwen2 and GPT-2 tokenizer files live beside the repository, in
// ../shared/tokenizers (present on CI and the team's machines; too large to commit). A lone
// clone has none: the tests that read them skip, saying why, instead of failing.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#define SKIP_WITHOUT_SHARED_TOKENIZERS()                                                 \
  do {                                                                                   \
    if (!std::filesystem::exists(std::string(VISPLAY_SHARED_DIR) +                       \
                                 "/tokenizers/qwen2/tokenizer.json")) {                  \
      GTEST_SKIP() << "no real tokenizer files under " VISPLAY_SHARED_DIR "/tokenizers"; \
    }                                                                                    \
  } while (0)
