// Client input quoted in an error message, bounded.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace quantmt {

// `text` from a client, in single quotes, for an error message: at most its
// first `limit` bytes (cut at a UTF-8 character boundary), its size noted
// when cut, so that no message echoes unbounded input back (a 1 MB model
// name would make a 1 MB status, which gRPC refuses as RESOURCE_EXHAUSTED).
inline std::string QuoteInput(absl::string_view text, size_t limit = 80) {
  if (text.size() <= limit) return absl::StrCat("'", text, "'");
  size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("'", text.substr(0, cut), "...' (", text.size(), " bytes)");
}

}  // namespace quantmt
