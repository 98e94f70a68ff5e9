// Corpus chrF exactly as sacreBLEU 2.x's CHRF computes it with its defaults
// (chrF2: character n-grams 1..6, no word n-grams, beta 2, whitespace
// removed, eps_smoothing off). Statistics are summed over the corpus and the
// F-score is computed once from the sums, averaging precision and recall
// over the "effective" orders (those where both hypothesis and reference
// have n-grams). word_order = 2 gives chrF++.
#pragma once

#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::eval {

struct ChrfOptions {
  int char_order = 6;  // REQUIRES: 1..32
  int word_order = 0;  // REQUIRES: 0..8; 2 is chrF++
  int beta = 2;        // REQUIRES: 0..100
  // See BleuOptions::version.
  std::string version = "2.6.0";
};

struct ChrfScore {
  double score = 0.0;  // 0..100
  int char_order = 6;
  int word_order = 0;
  int beta = 2;
  // e.g. "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
  std::string signature;

  // As sacreBLEU prints it: "chrF2 = 56.78" ("chrF2++ = ..." for chrF++).
  std::string ToString() const;
};

// Same input contract and errors as CorpusBleu (bleu.h). With several
// references, each segment uses the reference that gives it the best
// segment-level chrF, as sacreBLEU does.
absl::StatusOr<ChrfScore> CorpusChrf(const std::vector<std::string>& hyps,
                                     const std::vector<std::vector<std::string>>& refs,
                                     const ChrfOptions& options = {});

}  // namespace quantmt::eval
