// The `quantmt` subcommands, one file each. Each Add*Command registers its
// flags on `app` and a callback that runs it and stores the process exit
// code in *exit_code. `connection` is filled by the top-level flags.
#pragma once

#include <CLI/CLI.hpp>

#include "client/lib/connection.h"

namespace quantmt::client {

void AddTranslateCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code);
void AddEvaluateCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code);
void AddBenchmarkCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code);
void AddModelsCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code);
void AddLoadCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code);

// Reads every line of `path` ("-": stdin). False if unreadable.
bool ReadLinesFrom(const std::string& path, std::vector<std::string>* lines);

}  // namespace quantmt::client
