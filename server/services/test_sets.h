// Test sets in a corpus directory: DATA_DIR/<domain>/test*.<src> with the
// reference test*.<tgt> beside it (the layout quantmt-evaluate reads).
#pragma once

#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::server {

struct TestSetFiles {
  std::string domain, name;  // "news", "test2014"
  std::string source_path, reference_path;
};

// Every pair under `data_dir`, sorted by domain then name. Empty if none.
std::vector<TestSetFiles> FindTestSets(const std::string& data_dir, const std::string& source_lang,
                                       const std::string& target_lang);

// The sets `selectors` name: "DOMAIN" (all of its sets) or "DOMAIN/NAME".
// Names are matched against what FindTestSets found, so a selector can never
// reach outside the data directory. NotFound names the first unknown one.
absl::StatusOr<std::vector<TestSetFiles>> SelectTestSets(const std::vector<TestSetFiles>& available,
                                                         const std::vector<std::string>& selectors);

// At most `max_lines` lines (0: all). NotFound if the file cannot be read.
absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path, size_t max_lines);

}  // namespace quantmt::server
