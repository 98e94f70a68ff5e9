// Test sets in a corpus directory: DATA_DIR/<domain>/test*.<src> with the
// reference test*.<tgt> beside it. quantmt-evaluate and the server's
// Evaluate RPC both read this layout, so both find sets through here.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::eval {

struct TestSetFiles {
  std::string domain, name;  // "news", "test2014"
  std::string source_path, reference_path;
};

// Every pair under `data_dir`, sorted by domain then name. A source without
// its reference is left out; an unreadable or missing directory yields none.
std::vector<TestSetFiles> FindTestSets(const std::string& data_dir, const std::string& source_lang,
                                       const std::string& target_lang);

// At most `max_lines` lines (0: all). NotFound if the file cannot be read.
absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path, size_t max_lines);

}  // namespace quantmt::eval
