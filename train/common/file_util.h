// File-system steps the trainer's saves are built from. Checkpoints and the
// final model are written aside and renamed into place, so that a kill in
// the middle of a save never leaves a half-written directory behind a
// valid name.
#pragma once

#include <filesystem>
#include <string>

#include "quantmt/engine/status.h"

namespace quantmt::train {

absl::Status WriteTextFile(const std::filesystem::path& path, const std::string& text);
absl::StatusOr<std::string> ReadTextFile(const std::filesystem::path& path);
absl::Status CopyFile(const std::string& from, const std::filesystem::path& to);

// Removes `path` and everything below it, if it exists. (The pip CUDA
// LibTorch exports an incompatible std::filesystem::remove_all; the link order
// in cmake/QuantmtCompilerOptions.cmake keeps libstdc++'s.)
void RemoveTree(const std::filesystem::path& path);

// Moves a fully written directory into place, replacing an older one: a
// kill during a save leaves a ".tmp" directory that nothing reads.
absl::Status ReplaceDirectory(const std::filesystem::path& written,
                              const std::filesystem::path& target);

}  // namespace quantmt::train
