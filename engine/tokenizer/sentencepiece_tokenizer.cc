// The one translation unit that sees SentencePiece (see tokenizer.h for why).
// It must not include Abseil headers, directly or through quantmt headers.
// Built as the plugin libquantmt_spm.so, never linked into a program
// directly: see tokenizer_loader.cc for why.
#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "quantmt/engine/tokenizer.h"
#include "quantmt/engine/utf8.h"

namespace quantmt {
namespace {

void SetError(std::string* error, TokenizerErrorCode* code, TokenizerErrorCode value,
              const std::string& message) {
  if (error != nullptr) *error = message;
  if (code != nullptr) *code = value;
}

// strerror() may use a shared buffer; std::error_code's message does not.
std::string ErrnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// The message for text that is not valid UTF-8; names the offending byte so
// the user can find it.
std::string InvalidUtf8Message(const std::string& text, size_t offset) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "input is not valid UTF-8: bad byte 0x%02X at byte offset %zu",
                static_cast<unsigned>(static_cast<unsigned char>(text[offset])), offset);
  return buf;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : sp_(std::move(sp)), vocab_size_(sp_->GetPieceSize()) {}

  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const override {
    ids->clear();
    if (!CheckInput(text, error)) return false;
    const auto status = sp_->Encode(text, ids);
    if (!status.ok()) {
      ids->clear();
      if (error != nullptr) *error = std::string("sentencepiece: ") + status.message();
      return false;
    }
    return true;
  }

  bool EncodeAsPieces(const std::string& text, std::vector<std::string>* pieces,
                      std::string* error) const override {
    pieces->clear();
    if (!CheckInput(text, error)) return false;
    const auto status = sp_->Encode(text, pieces);
    if (!status.ok()) {
      pieces->clear();
      if (error != nullptr) *error = std::string("sentencepiece: ") + status.message();
      return false;
    }
    return true;
  }

  std::string Decode(const std::vector<int>& ids) const override {
    // SentencePiece itself indexes its piece table without a bounds check in
    // some paths, so out-of-range ids never reach it.
    std::vector<int> valid;
    valid.reserve(ids.size());
    for (int id : ids) {
      if (id >= 0 && id < vocab_size_) valid.push_back(id);
    }
    std::string text;
    if (!sp_->Decode(valid, &text).ok()) return std::string();
    return text;
  }

  int vocab_size() const override { return vocab_size_; }
  int pad_id() const override { return sp_->pad_id(); }
  int unk_id() const override { return sp_->unk_id(); }
  int bos_id() const override { return sp_->bos_id(); }
  int eos_id() const override { return sp_->eos_id(); }

  int PieceToId(const std::string& piece) const override { return sp_->PieceToId(piece); }

  std::string IdToPiece(int id) const override {
    if (id < 0 || id >= vocab_size_) return std::string();
    return sp_->IdToPiece(id);
  }

 private:
  static bool CheckInput(const std::string& text, std::string* error) {
    size_t bad = 0;
    if (IsValidUtf8(text, &bad)) return true;
    if (error != nullptr) *error = InvalidUtf8Message(text, bad);
    return false;
  }

  const std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  const int vocab_size_;
};

}  // namespace

namespace {

std::unique_ptr<Tokenizer> LoadSentencePiece(const std::string& model_path, std::string* error,
                                             TokenizerErrorCode* code) {
  const std::string where = "tokenizer model '" + model_path + "': ";
  // Checked here rather than left to SentencePiece, whose file reader treats
  // a directory as an empty (and thus "valid") file and whose messages do
  // not tell a missing file from a broken one.
  struct stat st;
  if (::stat(model_path.c_str(), &st) != 0) {
    const int err = errno;
    SetError(error, code,
             err == ENOENT ? TokenizerErrorCode::kNotFound : TokenizerErrorCode::kInvalidArgument,
             where + ErrnoMessage(err));
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    SetError(error, code, TokenizerErrorCode::kInvalidArgument, where + "not a regular file");
    return nullptr;
  }
  std::ifstream in(model_path, std::ios::binary);
  if (!in.is_open()) {
    SetError(error, code, TokenizerErrorCode::kInvalidArgument,
             where + "cannot open file: " + ErrnoMessage(errno));
    return nullptr;
  }
  const std::string serialized((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  if (in.bad()) {
    SetError(error, code, TokenizerErrorCode::kInvalidArgument, where + "read error");
    return nullptr;
  }
  if (serialized.empty()) {
    SetError(error, code, TokenizerErrorCode::kDataLoss, where + "file is empty");
    return nullptr;
  }
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->LoadFromSerializedProto(serialized);
  if (!status.ok()) {
    SetError(error, code, TokenizerErrorCode::kDataLoss,
             where + "not a valid SentencePiece model (" + status.message() + ")");
    return nullptr;
  }
  if (sp->GetPieceSize() <= 0) {
    SetError(error, code, TokenizerErrorCode::kDataLoss, where + "model has an empty vocabulary");
    return nullptr;
  }
  if (code != nullptr) *code = TokenizerErrorCode::kOk;
  return std::make_unique<SentencePieceTokenizer>(std::move(sp));
}

}  // namespace
}  // namespace quantmt

// The plugin's one entry point, looked up by tokenizer_loader.cc. Everything
// else in this library stays hidden (-fvisibility=hidden).
extern "C" __attribute__((visibility("default"))) quantmt::Tokenizer* quantmt_spm_load(
    const std::string* model_path, std::string* error, quantmt::TokenizerErrorCode* code) {
  return quantmt::LoadSentencePiece(*model_path, error, code).release();
}
