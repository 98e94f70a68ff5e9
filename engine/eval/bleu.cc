#include "quantmt/eval/bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "eval/text_utils.h"
#include "eval/tokenizer_13a.h"

namespace quantmt::eval {
namespace {

constexpr int kMaxOrder = 4;

// n-gram -> count. Keys view into the tokenized segment, whose tokens are
// joined by single spaces, so an n-gram is just a substring of it.
using NgramCounts = std::unordered_map<std::u32string_view, int64_t>;

// sacreBLEU's preprocessing for BLEU: rstrip, then 13a.
absl::Status Preprocess(const std::string& text, const char* what, size_t index,
                        std::u32string* tokenized) {
  std::u32string decoded;
  RETURN_IF_ERROR(DecodeSegment(text, what, index, &decoded));
  *tokenized = Tokenize13a(RStripWhitespace(decoded));
  return absl::OkStatus();
}

// Adds the 1..4-grams of `tokenized` to *counts; returns the token count.
int64_t CountNgrams(const std::u32string& tokenized, NgramCounts* counts) {
  // Token start offsets plus one past the end, so token j spans
  // [starts[j], starts[j + 1] - 1).
  std::vector<size_t> starts;
  if (!tokenized.empty()) {
    starts.push_back(0);
    for (size_t i = 0; i < tokenized.size(); ++i) {
      if (tokenized[i] == U' ') starts.push_back(i + 1);
    }
    starts.push_back(tokenized.size() + 1);
  }
  const int64_t num_tokens = starts.empty() ? 0 : static_cast<int64_t>(starts.size()) - 1;
  const std::u32string_view view(tokenized);
  for (int n = 1; n <= kMaxOrder; ++n) {
    for (int64_t i = 0; i + n <= num_tokens; ++i) {
      const size_t begin = starts[i];
      const size_t end = starts[i + n] - 1;
      ++(*counts)[view.substr(begin, end - begin)];
    }
  }
  return num_tokens;
}

int NgramOrder(std::u32string_view ngram) {
  return 1 + static_cast<int>(std::count(ngram.begin(), ngram.end(), U' '));
}

// sacreBLEU's _get_closest_ref_len: smallest |hyp - ref|, ties to the shorter.
int64_t ClosestRefLen(int64_t hyp_len, const std::vector<int64_t>& ref_lens) {
  int64_t best_diff = -1, best_len = -1;
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(hyp_len - len);
    if (best_diff == -1 || diff < best_diff) {
      best_diff = diff;
      best_len = len;
    } else if (diff == best_diff && len < best_len) {
      best_len = len;
    }
  }
  return best_len;
}

// sacreBLEU's my_log: log(0) is a large negative number, not -inf.
double MyLog(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

// sacreBLEU's BLEU.compute_bleu with smooth_method="exp", effective_order off.
void ComputeScore(BleuScore* s) {
  if (s->sys_len < s->ref_len) {
    s->bp = s->sys_len > 0
                ? std::exp(1.0 - static_cast<double>(s->ref_len) / static_cast<double>(s->sys_len))
                : 0.0;
  } else {
    s->bp = 1.0;
  }
  s->ratio = s->ref_len ? static_cast<double>(s->sys_len) / static_cast<double>(s->ref_len) : 0.0;
  s->precisions.assign(kMaxOrder, 0.0);
  s->score = 0.0;
  if (std::all_of(s->counts.begin(), s->counts.end(), [](int64_t c) { return c == 0; })) return;

  double smooth = 1.0;
  for (int n = 0; n < kMaxOrder; ++n) {
    if (s->totals[n] == 0) break;  // later precisions stay 0 and zero the score
    if (s->counts[n] == 0) {
      smooth *= 2;
      s->precisions[n] = 100.0 / (smooth * static_cast<double>(s->totals[n]));
    } else {
      s->precisions[n] =
          100.0 * static_cast<double>(s->counts[n]) / static_cast<double>(s->totals[n]);
    }
  }
  double log_sum = 0.0;
  for (double p : s->precisions) log_sum += MyLog(p);
  s->score = s->bp * std::exp(log_sum / kMaxOrder);
}

}  // namespace

std::string BleuScore::ToString() const {
  std::string precision_str;
  for (size_t i = 0; i < precisions.size(); ++i) {
    if (i > 0) precision_str += "/";
    precision_str += FormatFixed(precisions[i], 1);
  }
  return absl::StrCat("BLEU = ", FormatFixed(score, 2), " ", precision_str,
                      " (BP = ", FormatFixed(bp, 3), " ratio = ", FormatFixed(ratio, 3),
                      " hyp_len = ", sys_len, " ref_len = ", ref_len, ")");
}

absl::StatusOr<BleuScore> CorpusBleu(const std::vector<std::string>& hyps,
                                     const std::vector<std::vector<std::string>>& refs,
                                     const BleuOptions& options) {
  RETURN_IF_ERROR(CheckCorpusShape(hyps, refs));
  BleuScore result;
  result.counts.assign(kMaxOrder, 0);
  result.totals.assign(kMaxOrder, 0);
  size_t min_refs = refs.size(), max_refs = 0;

  std::vector<const std::string*> seg_refs;
  std::vector<std::u32string> ref_tokens;
  std::vector<int64_t> ref_lens;
  std::u32string hyp_tokens;
  for (size_t i = 0; i < hyps.size(); ++i) {
    RETURN_IF_ERROR(NonEmptyReferences(refs, i, &seg_refs));
    min_refs = std::min(min_refs, seg_refs.size());
    max_refs = std::max(max_refs, seg_refs.size());

    // Reference n-grams: per n-gram, the highest count in any one reference.
    ref_tokens.resize(seg_refs.size());
    ref_lens.clear();
    NgramCounts ref_counts;
    for (size_t k = 0; k < seg_refs.size(); ++k) {
      RETURN_IF_ERROR(Preprocess(*seg_refs[k], "reference", i, &ref_tokens[k]));
      NgramCounts this_ref;
      ref_lens.push_back(CountNgrams(ref_tokens[k], &this_ref));
      for (const auto& [ngram, count] : this_ref) {
        int64_t& merged = ref_counts[ngram];
        merged = std::max(merged, count);
      }
    }

    RETURN_IF_ERROR(Preprocess(hyps[i], "hypothesis", i, &hyp_tokens));
    NgramCounts hyp_counts;
    const int64_t hyp_len = CountNgrams(hyp_tokens, &hyp_counts);
    result.sys_len += hyp_len;
    result.ref_len += ClosestRefLen(hyp_len, ref_lens);
    for (const auto& [ngram, count] : hyp_counts) {
      const int n = NgramOrder(ngram) - 1;
      result.totals[n] += count;
      const auto it = ref_counts.find(ngram);
      if (it != ref_counts.end()) result.counts[n] += std::min(count, it->second);
    }
  }

  ComputeScore(&result);
  result.signature =
      absl::StrCat("nrefs:", NumRefsField(refs.size()),
                   "|case:mixed|eff:no|tok:13a|smooth:exp|version:", options.version);
  return result;
}

}  // namespace quantmt::eval
