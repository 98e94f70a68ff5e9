#include "train/common/data.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace quantmt::train {
namespace {

// Calls `visit(source_line, target_line)` for each aligned pair of the two
// files, at most `max_lines` (0: all). Fails if the files differ in length.
absl::Status ForEachPair(const std::string& source_file, const std::string& target_file,
                         int64_t max_lines,
                         const std::function<void(const std::string&, const std::string&)>& visit,
                         int64_t* pairs) {
  std::ifstream source(source_file), target(target_file);
  if (!source) return absl::NotFoundError(absl::StrCat("cannot open ", source_file));
  if (!target) return absl::NotFoundError(absl::StrCat("cannot open ", target_file));
  std::string source_line, target_line;
  int64_t count = 0;
  while (max_lines <= 0 || count < max_lines) {
    const bool has_source = static_cast<bool>(std::getline(source, source_line));
    const bool has_target = static_cast<bool>(std::getline(target, target_line));
    if (has_source != has_target) {
      return absl::InvalidArgumentError(absl::StrCat(source_file, " and ", target_file,
                                                     " differ in length: one ends after ", count,
                                                     " lines, the other goes on"));
    }
    if (!has_source) break;
    ++count;
    visit(source_line, target_line);
  }
  if (source.bad() || target.bad()) {
    return absl::DataLossError(absl::StrCat("read error in ", source_file, " or ", target_file));
  }
  *pairs = count;
  return absl::OkStatus();
}

// Text -> ids; false for invalid UTF-8.
bool Tokenize(const Tokenizer& tokenizer, const std::string& text, std::vector<int32_t>* out) {
  std::vector<int> ids;
  if (!tokenizer.Encode(text, &ids, nullptr)) return false;
  out->assign(ids.begin(), ids.end());
  return true;
}

// Both sides of a pair -> ids; false (and counted as invalid) on bad UTF-8.
bool TokenizePair(const Tokenizer& tokenizer, const std::string& source_line,
                  const std::string& target_line, Example* example, CorpusStats* stats) {
  if (Tokenize(tokenizer, source_line, &example->source) &&
      Tokenize(tokenizer, target_line, &example->target)) {
    return true;
  }
  ++stats->invalid;
  return false;
}

}  // namespace

std::string CorpusStats::ToString() const {
  return absl::StrCat(kept, " pairs kept of ", lines, " (skipped: ", invalid, " invalid UTF-8, ",
                      empty, " empty, ", too_long, " too long); ", source_tokens, " source and ",
                      target_tokens, " target tokens");
}

absl::StatusOr<std::vector<Example>> LoadParallelCorpus(
    const std::vector<std::string>& source_files, const std::vector<std::string>& target_files,
    const Tokenizer& tokenizer, const CorpusOptions& options, CorpusStats* stats) {
  if (source_files.empty() || source_files.size() != target_files.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("need as many target files as source files (and at least one), got ",
                     source_files.size(), " and ", target_files.size()));
  }
  *stats = CorpusStats();
  const int32_t eos = tokenizer.eos_id();
  std::vector<Example> examples;
  for (size_t f = 0; f < source_files.size(); ++f) {
    const int64_t left = options.max_lines > 0 ? options.max_lines - stats->lines : 0;
    if (options.max_lines > 0 && left <= 0) break;
    int64_t pairs = 0;
    RETURN_IF_ERROR(ForEachPair(
        source_files[f], target_files[f], left,
        [&](const std::string& source_line, const std::string& target_line) {
          Example example;
          if (!TokenizePair(tokenizer, source_line, target_line, &example, stats)) return;
          if (example.source.empty() || example.target.empty()) {
            ++stats->empty;
            return;
          }
          example.source.push_back(eos);
          const int64_t s = example.source_length(), t = example.target_length();
          if (s > options.max_len || t > options.max_len ||
              (options.max_pair_tokens > 0 && s + t > options.max_pair_tokens)) {
            ++stats->too_long;
            return;
          }
          stats->source_tokens += s;
          stats->target_tokens += t;
          examples.push_back(std::move(example));
        },
        &pairs));
    stats->lines += pairs;
  }
  stats->kept = static_cast<int64_t>(examples.size());
  if (examples.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no usable sentence pair in ", source_files[0], " ...: ", stats->ToString()));
  }
  return examples;
}

absl::StatusOr<DevSet> LoadDevSet(const std::string& source_file, const std::string& target_file,
                                  const Tokenizer& tokenizer, int64_t max_len, int64_t max_lines,
                                  CorpusStats* stats) {
  *stats = CorpusStats();
  DevSet dev;
  const int32_t eos = tokenizer.eos_id();
  RETURN_IF_ERROR(ForEachPair(
      source_file, target_file, max_lines,
      [&](const std::string& source_line, const std::string& target_line) {
        Example example;
        if (!TokenizePair(tokenizer, source_line, target_line, &example, stats)) return;
        if (example.target.empty()) {
          ++stats->empty;  // sacreBLEU refuses a segment without a reference
          return;
        }
        // BLEU covers every line; the model sees at most max_len positions.
        std::vector<int64_t> source(
            example.source.begin(),
            example.source.begin() + std::min<int64_t>(example.source.size(), max_len - 1));
        source.push_back(eos);
        dev.sources.push_back(std::move(source));
        dev.references.push_back(target_line);
        example.source.push_back(eos);
        if (example.source_length() > max_len || example.target_length() > max_len) {
          ++stats->too_long;
        } else {
          stats->source_tokens += example.source_length();
          stats->target_tokens += example.target_length();
          dev.examples.push_back(std::move(example));
        }
      },
      &stats->lines));
  stats->kept = static_cast<int64_t>(dev.sources.size());
  if (dev.sources.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no usable dev pair in ", source_file));
  }
  return dev;
}

int64_t BatchCost(const std::vector<Example>& examples, const std::vector<int64_t>& indices) {
  int64_t longest_source = 0, longest_target = 0;
  for (int64_t i : indices) {
    longest_source = std::max(longest_source, examples[i].source_length());
    longest_target = std::max(longest_target, examples[i].target_length());
  }
  return static_cast<int64_t>(indices.size()) * (longest_source + longest_target);
}

std::vector<std::vector<int64_t>> MakeBatches(const std::vector<Example>& examples,
                                              const BatchingOptions& options, uint64_t seed,
                                              int64_t epoch) {
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  // One generator per (seed, epoch): an epoch's batches can be rebuilt
  // exactly on resume without replaying earlier epochs.
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(epoch), static_cast<uint32_t>(epoch >> 32)};
  std::mt19937_64 rng(seq);
  if (options.shuffle) std::shuffle(order.begin(), order.end(), rng);

  // Without shuffling, the whole set is one sorted chunk.
  const size_t chunk_size = options.shuffle
                                ? static_cast<size_t>(std::max<int64_t>(1, options.chunk_size))
                                : std::max<size_t>(1, order.size());
  auto by_length = [&](int64_t a, int64_t b) {
    const Example& x = examples[a];
    const Example& y = examples[b];
    if (x.source_length() != y.source_length()) return x.source_length() < y.source_length();
    return x.target_length() < y.target_length();
  };
  std::vector<std::vector<int64_t>> batches;
  for (size_t begin = 0; begin < order.size(); begin += chunk_size) {
    const size_t end = std::min(order.size(), begin + chunk_size);
    std::stable_sort(order.begin() + begin, order.begin() + end, by_length);
    std::vector<int64_t> batch;
    int64_t longest_source = 0, longest_target = 0;
    for (size_t k = begin; k < end; ++k) {
      const Example& example = examples[order[k]];
      const int64_t s = std::max(longest_source, example.source_length());
      const int64_t t = std::max(longest_target, example.target_length());
      if (!batch.empty() && static_cast<int64_t>(batch.size() + 1) * (s + t) > options.max_tokens) {
        batches.push_back(std::move(batch));
        batch.clear();
        longest_source = example.source_length();
        longest_target = example.target_length();
      } else {
        longest_source = s;
        longest_target = t;
      }
      batch.push_back(order[k]);
    }
    if (!batch.empty()) batches.push_back(std::move(batch));
  }
  // Sorted chunks would feed short batches, then long ones; mix them.
  if (options.shuffle) std::shuffle(batches.begin(), batches.end(), rng);
  return batches;
}

Batch Batch::To(const torch::Device& device) const {
  Batch moved = *this;
  moved.source = source.to(device);
  moved.target_in = target_in.to(device);
  moved.target_out = target_out.to(device);
  return moved;
}

Batch Collate(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
              const SpecialIds& ids) {
  int64_t longest_source = 0, longest_target = 0;
  for (int64_t i : indices) {
    longest_source = std::max(longest_source, examples[i].source_length());
    longest_target = std::max(longest_target, examples[i].target_length());
  }
  const int64_t rows = static_cast<int64_t>(indices.size());
  Batch batch;
  batch.source = torch::full({rows, longest_source}, ids.pad, torch::kLong);
  batch.target_in = torch::full({rows, longest_target}, ids.pad, torch::kLong);
  batch.target_out = torch::full({rows, longest_target}, ids.pad, torch::kLong);
  auto source = batch.source.accessor<int64_t, 2>();
  auto target_in = batch.target_in.accessor<int64_t, 2>();
  auto target_out = batch.target_out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    const Example& example = examples[indices[r]];
    for (int64_t j = 0; j < example.source_length(); ++j) source[r][j] = example.source[j];
    target_in[r][0] = ids.bos;
    const int64_t n = static_cast<int64_t>(example.target.size());
    for (int64_t j = 0; j < n; ++j) {
      target_in[r][j + 1] = example.target[j];
      target_out[r][j] = example.target[j];
    }
    target_out[r][n] = ids.eos;
    batch.source_tokens += example.source_length();
    batch.target_tokens += example.target_length();
  }
  return batch;
}

}  // namespace quantmt::train
