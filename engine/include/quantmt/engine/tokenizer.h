// Subword tokenizer: text <-> token ids, backed by a SentencePiece model.
//
// This header is deliberately plain C++: SentencePiece 0.1.97 declares its own
// absl::string_view, so its headers and Abseil's cannot meet in one
// translation unit. Only tokenizer/sentencepiece_tokenizer.cc includes
// SentencePiece; callers that use absl::Status map TokenizerErrorCode
// themselves (kNotFound -> absl::NotFoundError, ...).
//
//   std::string error;
//   auto tok = quantmt::Tokenizer::Load("models/de-en/spm.model", &error);
//   if (tok == nullptr) ...  // error names the file
//   std::vector<int> ids;
//   if (!tok->Encode("Ein Hund rennt.", &ids, &error)) ...  // invalid UTF-8
//
// Thread safety: a loaded Tokenizer is immutable; every const method may be
// called concurrently from any number of threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace quantmt {

enum class TokenizerErrorCode {
  kOk = 0,
  kInvalidArgument,  // bad input text, or a path that is not a regular file
  kNotFound,         // the model file does not exist
  kDataLoss,         // the model file exists but is not a usable model
  kInternal,         // SentencePiece failed on input we had validated
};

class Tokenizer {
 public:
  // Loads a SentencePiece model file. Returns nullptr on failure and, if
  // `error` is not null, a message naming the file (missing, unreadable,
  // empty or corrupt); `code` (optional) says which kind of failure it was.
  static std::unique_ptr<Tokenizer> Load(const std::string& model_path, std::string* error,
                                         TokenizerErrorCode* code = nullptr);

  virtual ~Tokenizer() = default;

  // Text -> ids, without BOS/EOS (the caller adds what its model expects).
  // Returns false with a message in `error` (if not null) when the text is not
  // valid UTF-8; the message gives the byte offset of the first bad byte.
  // Invalid UTF-8 is rejected, not repaired, so the caller can tell the user
  // exactly which input was wrong. On false, *ids is cleared.
  virtual bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const = 0;

  // Text -> pieces (e.g. "▁Hund"), for debugging and tests. Same contract as
  // Encode.
  virtual bool EncodeAsPieces(const std::string& text, std::vector<std::string>* pieces,
                              std::string* error) const = 0;

  // Ids -> text. Never fails: ids outside [0, vocab_size()) are DROPPED
  // (a model can emit nothing outside its vocabulary, so such an id is a
  // caller bug; dropping keeps the rest of the sentence readable). Control
  // ids (pad/bos/eos) decode to nothing; unk decodes to " ⁇ ".
  virtual std::string Decode(const std::vector<int>& ids) const = 0;

  virtual int vocab_size() const = 0;
  // Special ids; -1 if the model has none. quantmt-spm-train always writes
  // pad=0, unk=1, bos=2, eos=3.
  virtual int pad_id() const = 0;
  virtual int unk_id() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;

  // unk_id() for a piece not in the vocabulary.
  virtual int PieceToId(const std::string& piece) const = 0;
  // The piece of `id`, or "" for an id outside [0, vocab_size()).
  virtual std::string IdToPiece(int id) const = 0;
};

}  // namespace quantmt
