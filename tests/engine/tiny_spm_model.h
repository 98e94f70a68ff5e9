// Trains small SentencePiece models for tests, in-process, so tokenizer tests
// need no checked-in model and no data directory. Plain C++: the .cc is the
// only test TU that includes SentencePiece (see tokenizer.h for why).
#pragma once

#include <string>

namespace quantmt::testing {

// Writes a deterministic German/English-ish corpus (a few hundred lines,
// ASCII plus äöüß é) to `path`. Returns false on I/O failure.
bool WriteTinyCorpus(const std::string& path);

// Trains a unigram model on the comma-separated `inputs` with the engine's
// special ids (pad=0 unk=1 bos=2 eos=3), writing `model_prefix`.model.
// Returns false with a message in *error.
bool TrainSpmModel(const std::string& inputs, const std::string& model_prefix, int vocab_size,
                   std::string* error);

}  // namespace quantmt::testing
