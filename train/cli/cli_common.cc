// Failure reporting and flag parsing shared by the quantmt tools.
#include "train/cli/cli_common.h"

#include <exception>
#include <iostream>

namespace quantmt::cli {

int Fail(const std::string& prefix, const std::string& message) {
  std::cerr << prefix << message << "\n";
  return 1;
}

bool ParseFlags(CLI::App& app, int argc, char** argv, int* exit_code) {
  try {
    app.parse(argc, argv);
    return true;
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e) == 0 ? 0 : 1;
    return false;
  }
}

int RunGuarded(const std::string& error_prefix, int (*run)(int, char**), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    return Fail(error_prefix, e.what());
  }
}

}  // namespace quantmt::cli
