// Arbitrary bytes through the tokenizer wrapper (the SentencePiece plugin
// with a real model): as text to encode, and as token ids to decode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "quantmt/engine/tokenizer.h"
#include "quantmt/engine/utf8.h"

namespace {

const quantmt::Tokenizer& GetTokenizer() {
  static const quantmt::Tokenizer* tokenizer = [] {
    const char* env = std::getenv("QUANTMT_FUZZ_SPM_MODEL");
    const std::string path = env != nullptr && *env ? env : QUANTMT_FUZZ_DEFAULT_SPM_MODEL;
    std::string error;
    std::unique_ptr<quantmt::Tokenizer> loaded = quantmt::Tokenizer::Load(path, &error);
    if (loaded == nullptr) {
      std::fprintf(stderr, "fuzz_tokenizer: %s\n", error.c_str());
      std::abort();
    }
    return loaded.release();
  }();
  return *tokenizer;
}

void CheckEncode(const quantmt::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int> ids;
  std::string error;
  const bool encoded = tokenizer.Encode(text, &ids, &error);
  FUZZ_CHECK(encoded == quantmt::IsValidUtf8(text, nullptr),
             "exactly the valid UTF-8 texts encode");
  if (!encoded) {
    FUZZ_CHECK(ids.empty() && !error.empty(), "a refusal clears ids and says why");
    return;
  }
  for (int id : ids) FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size(), "ids in the vocabulary");
  std::vector<std::string> pieces;
  FUZZ_CHECK(tokenizer.EncodeAsPieces(text, &pieces, &error), "valid text splits into pieces");
  FUZZ_CHECK(pieces.size() == ids.size(), "one piece per id");
  // An unknown piece keeps its surface text ("日本"), while its id is unk.
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool unknown = ids[i] == tokenizer.unk_id();
    FUZZ_CHECK(unknown ? tokenizer.PieceToId(pieces[i]) == ids[i]
                       : tokenizer.IdToPiece(ids[i]) == pieces[i],
               "ids and pieces agree");
  }
  FUZZ_CHECK(quantmt::IsValidUtf8(tokenizer.Decode(ids), nullptr), "decoding gives valid UTF-8");
}

// The bytes as little-endian int32 ids, most of them outside the vocabulary.
void CheckDecode(const quantmt::Tokenizer& tokenizer, const uint8_t* data, size_t size) {
  std::vector<int> ids(size / sizeof(int32_t));
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * sizeof(int32_t));
  FUZZ_CHECK(quantmt::IsValidUtf8(tokenizer.Decode(ids), nullptr), "decoding gives valid UTF-8");
  for (int id : ids) tokenizer.IdToPiece(id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const quantmt::Tokenizer& tokenizer = GetTokenizer();
  CheckEncode(tokenizer, std::string(reinterpret_cast<const char*>(data), size));
  CheckDecode(tokenizer, data, size);
  return 0;
}
