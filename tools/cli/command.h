// Subcommands of the `visplay` binary register themselves here, one file each,
// so adding a command never touches main.cpp.
#pragma once
#include <CLI/CLI.hpp>

namespace visplay::cli {

// Adds a subcommand (with its options and callback) to the app.
using CommandSetup = void (*)(CLI::App& app);

int register_command(CommandSetup setup);

}  // namespace visplay::cli

// At namespace scope in a tools/cli/*.cpp file: VISPLAY_COMMAND(setup_tokenize);
#define VISPLAY_COMMAND(fn) \
  [[maybe_unused]] static const int fn##_registered = ::visplay::cli::register_command(fn)
