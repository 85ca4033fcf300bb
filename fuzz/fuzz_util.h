// Shared by the libFuzzer targets: the contract every loader must keep on any input
// is "return a consistent result, or throw std::runtime_error whose message starts
// with the input's name". Anything else is a bug and must stop the fuzzer loudly:
// a sanitizer report, another exception type (it would escape the CLI's message),
// or an error that does not say where.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace visplay::fuzz {

// Where targets store values they read only so that the reads happen.
inline volatile unsigned sink = 0;

// Stops the run with a message (libFuzzer then saves the input as a crash).
[[noreturn]] inline void violated(const std::string& what) {
  std::fprintf(stderr, "fuzz contract violated: %s\n", what.c_str());
  std::abort();
}

inline void check(bool ok, const std::string& what) {
  if (!ok) violated(what);
}

// An error is acceptable only when its message names the input.
inline void check_error_names(const std::runtime_error& e, const std::string& name) {
  std::string message = e.what();
  if (message.rfind(name, 0) != 0) violated("error does not start with '" + name + "': " + message);
}

}  // namespace visplay::fuzz
