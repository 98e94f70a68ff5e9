// Arbitrary bytes through the strict UTF-8 validator and decoder, checked
// against each other and against re-encoding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "quantmt/engine/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t bad = size + 1;
  const bool valid = quantmt::IsValidUtf8(text, &bad);
  std::u32string cps;
  size_t decode_bad = size + 1;
  const bool decoded = quantmt::DecodeUtf8(text, &cps, &decode_bad);
  FUZZ_CHECK(valid == decoded, "validator and decoder agree");
  if (!valid) {
    FUZZ_CHECK(bad < size, "the bad offset is inside the text");
    FUZZ_CHECK(decode_bad == bad, "validator and decoder name the same offset");
    FUZZ_CHECK(quantmt::IsValidUtf8(text.substr(0, bad), nullptr),
               "everything before the bad offset is valid");
    return 0;
  }
  FUZZ_CHECK(bad == size + 1, "the offset is left alone on success");
  for (char32_t cp : cps) {
    FUZZ_CHECK(cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF), "decoded a scalar value");
  }
  FUZZ_CHECK(quantmt::EncodeUtf8(cps) == text, "re-encoding gives the same bytes");
  return 0;
}
