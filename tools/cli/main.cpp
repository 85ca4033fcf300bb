// The `visplay` binary: every subcommand lives in its own file in tools/cli/.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "tools/cli/command.h"

namespace visplay::cli {

static std::vector<CommandSetup>& commands() {
  static std::vector<CommandSetup> list;
  return list;
}

int register_command(CommandSetup setup) {
  commands().push_back(setup);
  return 0;
}

}  // namespace visplay::cli

int main(int argc, char** argv) {
  // OpenMP threads that spin while idle slow small ops 30-100x on a busy or
  // small machine. libgomp reads OMP_WAIT_POLICY when it loads, before main,
  // so when the user has not chosen one, set "passive" and start again once.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
  }
  CLI::App app{"visplay: self-evolving vision-language models (VisPlay) in C++/CUDA"};
  app.require_subcommand(1);
  for (auto setup : visplay::cli::commands()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "visplay: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
