// Whole-file reads and writes, copies and directory swaps, as Status.
#include "train/common/file_util.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace quantmt::train {

namespace fs = std::filesystem;

absl::Status WriteTextFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTextFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status CopyFile(const std::string& from, const fs::path& to) {
  std::error_code error;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot copy ", from, " to ", to.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

void RemoveTree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
}

absl::Status ReplaceDirectory(const fs::path& written, const fs::path& target) {
  RemoveTree(target);
  std::error_code error;
  fs::rename(written, target, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat("cannot move ", written.string(), " to ",
                                                    target.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace quantmt::train
