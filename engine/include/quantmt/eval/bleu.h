// Corpus BLEU exactly as sacreBLEU 2.x computes it with its defaults:
// tokenizer 13a, mixed case, smoothing "exp", max n-gram order 4, effective
// order off, sacreBLEU's brevity penalty, any number of references.
//
//   auto bleu = quantmt::eval::CorpusBleu(hyps, {refs});
//   if (bleu.ok()) std::cout << bleu->ToString() << "\n" << bleu->signature;
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::eval {

struct BleuOptions {
  // Printed in the signature. "2.6.0" states that the numbers are computed to
  // match sacreBLEU 2.6.0; it says nothing about a Python install.
  std::string version = "2.6.0";
};

struct BleuScore {
  double score = 0.0;              // 0..100
  std::vector<double> precisions;  // 4 n-gram precisions, 0..100 (smoothed)
  double bp = 0.0;                 // brevity penalty
  double ratio = 0.0;              // sys_len / ref_len (0 if ref_len is 0)
  int64_t sys_len = 0;             // hypothesis tokens
  int64_t ref_len = 0;             // closest reference tokens, summed
  std::vector<int64_t> counts;     // matched n-grams per order
  std::vector<int64_t> totals;     // hypothesis n-grams per order
  // e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
  std::string signature;

  // As sacreBLEU prints it: "BLEU = 34.21 65.2/40.1/27.3/19.0 (BP = 0.987
  // ratio = 0.987 hyp_len = 12345 ref_len = 12500)" (one line).
  std::string ToString() const;
};

// refs[k][i] is the i-th segment of the k-th reference stream. Every stream
// must have hyps.size() lines. Empty reference lines are skipped, as in
// sacreBLEU (a segment may have fewer references),
// but a segment whose references are all empty is an error, as there.
// InvalidArgument for a shape mismatch, no segments, or invalid UTF-8.
absl::StatusOr<BleuScore> CorpusBleu(const std::vector<std::string>& hyps,
                                     const std::vector<std::vector<std::string>>& refs,
                                     const BleuOptions& options = {});

}  // namespace quantmt::eval
