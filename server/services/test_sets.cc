// Selection of named test sets for the Evaluate RPC.
#include "server/services/test_sets.h"

#include "absl/strings/str_cat.h"

namespace quantmt::server {

absl::StatusOr<std::vector<eval::TestSetFiles>> SelectTestSets(
    const std::vector<eval::TestSetFiles>& available, const std::vector<std::string>& selectors) {
  std::vector<eval::TestSetFiles> selected;
  for (const std::string& selector : selectors) {
    const size_t before = selected.size();
    for (const eval::TestSetFiles& set : available) {
      if (selector == set.domain || selector == set.domain + "/" + set.name) {
        selected.push_back(set);
      }
    }
    if (selected.size() == before) {
      std::string known;
      for (const eval::TestSetFiles& set : available)
        absl::StrAppend(&known, " ", set.domain, "/", set.name);
      return absl::NotFoundError(absl::StrCat(
          "no test set \"", selector,
          "\" in the server's data directory; it has:", known.empty() ? " none" : known));
    }
  }
  return selected;
}

}  // namespace quantmt::server
