// Picking test sets by name for the Evaluate RPC, among those the engine's
// discovery (eval/test_sets.h) found in the server's data directory.
#pragma once

#include <string>
#include <vector>

#include "quantmt/engine/status.h"
#include "quantmt/eval/test_sets.h"

namespace quantmt::server {

// The sets `selectors` name: "DOMAIN" (all of its sets) or "DOMAIN/NAME".
// Names are matched against what FindTestSets found, so a selector can never
// reach outside the data directory. NotFound names the first unknown one.
absl::StatusOr<std::vector<eval::TestSetFiles>> SelectTestSets(
    const std::vector<eval::TestSetFiles>& available, const std::vector<std::string>& selectors);

}  // namespace quantmt::server
