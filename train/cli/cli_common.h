// What the quantmt command-line tools share: one way to fail (a line on
// stderr and exit code 1), flag parsing whose usage errors exit 1 rather
// than with CLI11's own codes, and a guard that turns an escaping exception
// into such a failure instead of an abort.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace quantmt::cli {

// Writes `prefix`, `message` and a newline to stderr; returns 1. The prefix
// is each tool's own ("quantmt-train: error: "), kept as the tools always
// printed it.
int Fail(const std::string& prefix, const std::string& message);

// Parses the command line. False when the tool should return `*exit_code`
// now: 0 after --help, 1 after a usage error (CLI11 has printed it).
bool ParseFlags(CLI::App& app, int argc, char** argv, int* exit_code);

// Returns run(argc, argv); an exception that escapes it (file system
// errors, allocation failures) becomes Fail(error_prefix, what()).
int RunGuarded(const std::string& error_prefix, int (*run)(int, char**), int argc, char** argv);

}  // namespace quantmt::cli
