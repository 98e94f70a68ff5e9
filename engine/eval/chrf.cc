#include "quantmt/eval/chrf.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "eval/text_utils.h"

namespace quantmt::eval {
namespace {

using NgramCounts = std::unordered_map<std::u32string_view, int64_t>;

// string.punctuation, which chrF++'s word splitter peels off word edges.
bool IsAsciiPunct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// The n-grams of one segment, per order: char orders first, then word orders.
// Views point into the strings held here, so keep it alive while counting.
struct SegmentNgrams {
  std::u32string chars;               // segment without whitespace
  std::vector<std::u32string> words;  // chrF++ words
  std::u32string joined;              // words joined by single spaces
  std::vector<NgramCounts> counts;
};

// sacreBLEU's CHRF._remove_punctuation: one punctuation mark is split off
// the end of a word, else off its start (so "(hi)" -> "(hi", ")").
std::vector<std::u32string> ChrfWords(std::u32string_view segment) {
  std::vector<std::u32string> words;
  for (std::u32string_view w : SplitWhitespace(segment)) {
    if (w.size() == 1) {
      words.emplace_back(w);
    } else if (IsAsciiPunct(w.back())) {
      words.emplace_back(w.substr(0, w.size() - 1));
      words.emplace_back(w.substr(w.size() - 1));
    } else if (IsAsciiPunct(w.front())) {
      words.emplace_back(w.substr(0, 1));
      words.emplace_back(w.substr(1));
    } else {
      words.emplace_back(w);
    }
  }
  return words;
}

void Extract(std::u32string_view segment, const ChrfOptions& opt, SegmentNgrams* out) {
  out->chars = RemoveWhitespace(segment);
  out->counts.assign(opt.char_order + opt.word_order, NgramCounts());
  const std::u32string_view chars(out->chars);
  for (int n = 1; n <= opt.char_order; ++n) {
    for (size_t i = 0; i + n <= chars.size(); ++i) ++out->counts[n - 1][chars.substr(i, n)];
  }
  if (opt.word_order == 0) return;

  // Word n-grams as substrings of the words joined by single spaces (words
  // hold no whitespace, so this is unambiguous).
  out->words = ChrfWords(segment);
  out->joined.clear();
  std::vector<size_t> starts;  // word j spans [starts[j], starts[j + 1] - 1)
  for (const auto& w : out->words) {
    if (!starts.empty()) out->joined += U' ';
    starts.push_back(out->joined.size());
    out->joined += w;
  }
  starts.push_back(out->joined.size() + 1);
  const std::u32string_view all(out->joined);
  const size_t num_words = out->words.size();
  for (int n = 1; n <= opt.word_order; ++n) {
    for (size_t i = 0; i + n <= num_words; ++i) {
      const size_t begin = starts[i];
      ++out->counts[opt.char_order + n - 1][all.substr(begin, starts[i + n] - 1 - begin)];
    }
  }
}

// sacreBLEU's _get_match_statistics for every order: [hyp, ref, match]
// triples. Hypothesis n-grams count only where the reference has n-grams.
std::vector<int64_t> MatchStatistics(const SegmentNgrams& hyp, const SegmentNgrams& ref) {
  std::vector<int64_t> stats;
  stats.reserve(3 * hyp.counts.size());
  for (size_t o = 0; o < hyp.counts.size(); ++o) {
    const NgramCounts& r = ref.counts[o];
    int64_t hyp_count = 0, match = 0, ref_count = 0;
    for (const auto& [ngram, count] : hyp.counts[o]) {
      hyp_count += count;
      const auto it = r.find(ngram);
      if (it != r.end()) match += std::min(count, it->second);
    }
    for (const auto& [ngram, count] : r) ref_count += count;
    stats.push_back(r.empty() ? 0 : hyp_count);
    stats.push_back(ref_count);
    stats.push_back(match);
  }
  return stats;
}

// sacreBLEU's CHRF._compute_f_score with eps_smoothing=False, in 0..100.
// The arithmetic follows sacreBLEU's order so results agree to the last bit.
double FScore(const std::vector<int64_t>& stats, int beta) {
  const double factor = static_cast<double>(beta) * beta;
  double avg_prec = 0.0, avg_rec = 0.0;
  int effective_order = 0;
  for (size_t i = 0; i + 2 < stats.size(); i += 3) {
    const int64_t n_hyp = stats[i], n_ref = stats[i + 1], n_match = stats[i + 2];
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += static_cast<double>(n_match) / static_cast<double>(n_hyp);
      avg_rec += static_cast<double>(n_match) / static_cast<double>(n_ref);
      ++effective_order;
    }
  }
  if (effective_order == 0) return 0.0;
  avg_prec /= effective_order;
  avg_rec /= effective_order;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double score = (1 + factor) * avg_prec * avg_rec;
  score /= (factor * avg_prec) + avg_rec;
  return 100 * score;
}

absl::Status CheckOptions(const ChrfOptions& opt) {
  if (opt.char_order < 1 || opt.char_order > 32) {
    return absl::InvalidArgumentError("chrF char_order must be in 1..32");
  }
  if (opt.word_order < 0 || opt.word_order > 8) {
    return absl::InvalidArgumentError("chrF word_order must be in 0..8");
  }
  if (opt.beta < 0 || opt.beta > 100)
    return absl::InvalidArgumentError("chrF beta must be in 0..100");
  return absl::OkStatus();
}

}  // namespace

std::string ChrfScore::ToString() const {
  return absl::StrCat("chrF", beta, std::string(std::max(0, std::min(word_order, 8)), '+'), " = ",
                      FormatFixed(score, 2));
}

absl::StatusOr<ChrfScore> CorpusChrf(const std::vector<std::string>& hyps,
                                     const std::vector<std::vector<std::string>>& refs,
                                     const ChrfOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  RETURN_IF_ERROR(CheckCorpusShape(hyps, refs));
  const size_t num_orders = options.char_order + options.word_order;
  std::vector<int64_t> corpus(3 * num_orders, 0);
  size_t min_refs = refs.size(), max_refs = 0;

  std::vector<const std::string*> seg_refs;
  std::u32string decoded;
  for (size_t i = 0; i < hyps.size(); ++i) {
    RETURN_IF_ERROR(NonEmptyReferences(refs, i, &seg_refs));
    min_refs = std::min(min_refs, seg_refs.size());
    max_refs = std::max(max_refs, seg_refs.size());

    SegmentNgrams hyp;
    RETURN_IF_ERROR(DecodeSegment(hyps[i], "hypothesis", i, &decoded));
    Extract(decoded, options, &hyp);

    // The reference with the best segment score wins; ties keep the first.
    std::vector<int64_t> best;
    double best_score = -1.0;
    for (const std::string* ref_text : seg_refs) {
      SegmentNgrams ref;
      RETURN_IF_ERROR(DecodeSegment(*ref_text, "reference", i, &decoded));
      Extract(decoded, options, &ref);
      std::vector<int64_t> stats = MatchStatistics(hyp, ref);
      const double score = FScore(stats, options.beta);
      if (score > best_score) {
        best_score = score;
        best = std::move(stats);
      }
    }
    for (size_t j = 0; j < corpus.size(); ++j) corpus[j] += best[j];
  }

  ChrfScore result;
  result.score = FScore(corpus, options.beta);
  result.char_order = options.char_order;
  result.word_order = options.word_order;
  result.beta = options.beta;
  result.signature = absl::StrCat(
      "nrefs:", NumRefsField(refs.size()), "|case:mixed|eff:yes|nc:", options.char_order,
      "|nw:", options.word_order, "|space:no|version:", options.version);
  return result;
}

}  // namespace quantmt::eval
