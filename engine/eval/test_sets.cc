// Test-set discovery on the file system; no torch, so the server's
// evaluation path and the command-line tool share it.
#include "quantmt/eval/test_sets.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace quantmt::eval {

namespace fs = std::filesystem;

std::vector<TestSetFiles> FindTestSets(const std::string& data_dir, const std::string& source_lang,
                                       const std::string& target_lang) {
  std::vector<TestSetFiles> sets;
  // Error codes, not exceptions: a directory that vanishes or cannot be
  // read while it is listed costs its sets, not the whole evaluation.
  std::error_code error;
  for (const auto& domain : fs::directory_iterator(data_dir, error)) {
    if (!domain.is_directory(error)) continue;
    for (const auto& file : fs::directory_iterator(domain.path(), error)) {
      const fs::path& path = file.path();
      if (path.filename().string().rfind("test", 0) != 0 || path.extension() != "." + source_lang) {
        continue;
      }
      fs::path reference = path;
      reference.replace_extension(target_lang);
      if (!fs::exists(reference, error)) continue;
      sets.push_back({domain.path().filename().string(), path.stem().string(), path.string(),
                      reference.string()});
    }
  }
  std::sort(sets.begin(), sets.end(), [](const TestSetFiles& a, const TestSetFiles& b) {
    return std::tie(a.domain, a.name) < std::tie(b.domain, b.name);
  });
  return sets;
}

absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path, size_t max_lines) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<std::string> lines;
  for (std::string line; (max_lines == 0 || lines.size() < max_lines) && std::getline(in, line);) {
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace quantmt::eval
