// Strict UTF-8 validation and decoding (RFC 3629, Unicode Table 3-7).
//
// Plain C++ with no SentencePiece or Abseil, so both the tokenizer (which must
// not see Abseil) and the metrics (which must not see SentencePiece) share it.
// "Strict" means what Python's str.decode("utf-8") accepts: no overlong forms,
// no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
// sequences, no stray continuation bytes. Anything else is rejected with the
// offset of the first byte that cannot start or continue a valid sequence.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace quantmt {

// True if `s` is well-formed UTF-8. On false, *bad_offset (if not null) is
// the byte offset of the first ill-formed sequence; it is left alone on true.
bool IsValidUtf8(std::string_view s, size_t* bad_offset);

// Decodes well-formed UTF-8 into code points. On ill-formed input returns
// false, sets *bad_offset as IsValidUtf8 does, and leaves *out unspecified.
bool DecodeUtf8(std::string_view s, std::u32string* out, size_t* bad_offset);

// Appends the UTF-8 encoding of `cp`. REQUIRES: `cp` is a Unicode scalar
// value (<= U+10FFFF, not a surrogate); anything else appends U+FFFD.
void AppendUtf8(char32_t cp, std::string* out);

// The UTF-8 encoding of a sequence of code points (see AppendUtf8).
std::string EncodeUtf8(std::u32string_view cps);

}  // namespace quantmt
