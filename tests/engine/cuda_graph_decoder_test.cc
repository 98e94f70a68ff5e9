// The CUDA graph decoder gives GreedySearch's results: on small random models
// against the eager path on the same GPU, and on the shipped default model
// over real sentences against CPU float32 and eager CUDA float16, where every
// difference must start at a near-tie. The GPU tests skip without a GPU (the
// default-model ones also without QUANTMT_DATA_DIR).
#include "decoding/cuda_graph_decoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>

#include "model/model_io.h"
#include "quantmt/engine/tokenizer.h"
#include "quantmt/engine/translator.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

std::vector<std::vector<int64_t>> RandomSources(int count, const ModelConfig& config,
                                                uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<std::vector<int64_t>> sources(count);
  for (int i = 0; i < count; ++i) {
    const int length = 1 + static_cast<int>(random() % 20);
    for (int j = 0; j < length; ++j) {
      sources[i].push_back(4 + static_cast<int64_t>(random() % (config.source_vocab_size - 4)));
    }
    sources[i].push_back(config.eos_id);
  }
  return sources;
}

TEST(CudaGraphDecoderTest, RefusesModelsItCannotRun) {
  auto model = testing::TinyModel(testing::TinyConfig());
  auto on_cpu = CudaGraphDecoder::Create(*model);
  ASSERT_FALSE(on_cpu.ok());
  if (absl::IsUnimplemented(on_cpu.status())) {
    EXPECT_NE(on_cpu.status().message().find("CUDA"), std::string::npos);
    GTEST_SKIP() << "built without CUDA: " << on_cpu.status();
  }
  EXPECT_TRUE(absl::IsFailedPrecondition(on_cpu.status())) << on_cpu.status();
  EXPECT_NE(on_cpu.status().message().find("CUDA device"), std::string::npos) << on_cpu.status();
  model->train();
  auto training = CudaGraphDecoder::Create(*model);
  ASSERT_FALSE(training.ok());
  EXPECT_NE(training.status().message().find("eval"), std::string::npos) << training.status();
}

void ExpectSameResults(const SearchResults& expected, const SearchResults& actual, double tolerance,
                       const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(expected[i].size(), 1u) << what;
    ASSERT_EQ(actual[i].size(), 1u) << what;
    const SearchHypothesis& e = expected[i][0];
    const SearchHypothesis& a = actual[i][0];
    EXPECT_EQ(e.tokens, a.tokens) << what << ", sentence " << i;
    EXPECT_EQ(e.finished, a.finished) << what << ", sentence " << i;
    EXPECT_NEAR(e.log_prob, a.log_prob, tolerance) << what << ", sentence " << i;
    EXPECT_NEAR(e.score, a.score, tolerance) << what << ", sentence " << i;
  }
}

TEST(CudaGraphDecoderTest, MatchesEagerGreedyOnTinyModels) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  const std::vector<ModelConfig> configs = testing::VariedTinyConfigs();
  for (size_t c = 0; c < configs.size(); ++c) {
    auto model = testing::TinyModel(configs[c], 11 + c);
    model->to(torch::kCUDA);
    const auto sources = RandomSources(7, configs[c], 5 + c);
    SearchOptions options;
    options.max_length = 12;
    options.min_length = 2;
    options.length_penalty = 0.6f;
    const SearchResults expected = GreedySearch(*model, sources, options, torch::kCUDA);
    for (bool graphs : {true, false}) {
      CudaGraphDecoderOptions decoder_options;
      decoder_options.capture_graphs = graphs;
      decoder_options.max_rows = 4;  // 7 sentences: slices of 4 and 3 rows
      auto decoder = CudaGraphDecoder::Create(*model, decoder_options);
      ASSERT_TRUE(decoder.ok()) << decoder.status();
      const std::string what = "config " + std::to_string(c) + (graphs ? ", graphs" : ", op by op");
      auto first = (*decoder)->GreedySearch(sources, options);
      ASSERT_TRUE(first.ok()) << first.status();
      ExpectSameResults(expected, *first, 1e-4, what);
      // Replayed graphs (and reused buffers) give the first call's results.
      auto second = (*decoder)->GreedySearch(sources, options);
      ASSERT_TRUE(second.ok()) << second.status();
      ExpectSameResults(*first, *second, 0.0, what + ", second call");
    }
  }
}

TEST(CudaGraphDecoderTest, EvictedBucketsAreCapturedAgain) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  auto model = testing::TinyModel(testing::TinyConfig(), 13);
  model->to(torch::kCUDA);
  CudaGraphDecoderOptions decoder_options;
  decoder_options.max_buckets = 1;  // every new shape drops the last one's graphs
  auto decoder = CudaGraphDecoder::Create(*model, decoder_options);
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  SearchOptions options;
  options.max_length = 10;
  const auto few = RandomSources(2, model->config(), 1);
  const auto many = RandomSources(9, model->config(), 2);
  for (const auto* sources : {&few, &many, &few}) {
    auto results = (*decoder)->GreedySearch(*sources, options);
    ASSERT_TRUE(results.ok()) << results.status();
    ExpectSameResults(GreedySearch(*model, *sources, options, torch::kCUDA), *results, 1e-4,
                      std::to_string(sources->size()) + " sentences");
  }
}

TEST(CudaGraphDecoderTest, RejectsBadInputs) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto model = testing::TinyModel(testing::TinyConfig());
  model->to(torch::kCUDA);
  auto decoder = CudaGraphDecoder::Create(*model);
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  const SearchOptions options;  // max_length 256 > the tiny model's 64 positions
  SearchOptions short_options;
  short_options.max_length = 10;
  struct Case {
    std::vector<std::vector<int64_t>> sources;
    SearchOptions options;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{5, 3}, {}}, short_options, "source 1 is empty"},
      {{{5, 50, 3}}, short_options, "outside the vocabulary"},
      {{{-1, 3}}, short_options, "outside the vocabulary"},
      {{std::vector<int64_t>(65, 5)}, short_options, "at most 64"},
      {{{5, 3}}, options, "max_length 256"},
  };
  for (const Case& c : cases) {
    auto results = (*decoder)->GreedySearch(c.sources, c.options);
    ASSERT_FALSE(results.ok()) << c.message;
    EXPECT_TRUE(absl::IsInvalidArgument(results.status())) << results.status();
    EXPECT_NE(results.status().message().find(c.message), std::string::npos) << results.status();
  }
  auto empty = (*decoder)->GreedySearch({}, short_options);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

std::vector<std::string> ReadLines(const std::string& path, size_t limit) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; lines.size() < limit && std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<int64_t> WithEos(const SearchHypothesis& hypothesis, int64_t eos) {
  std::vector<int64_t> tokens = hypothesis.tokens;
  if (hypothesis.finished) tokens.push_back(eos);
  return tokens;
}

// Compares two greedy results sentence by sentence. Where the token sequences
// differ, the model (as it is now, on `device`) scores the common prefix: the
// two tokens chosen after it must be within `tie` nats of each other, i.e.
// the difference starts at a near-tie that rounding may decide either way.
// Returns the number of identical sequences.
int CompareExplained(Transformer& model, const torch::Device& device,
                     const std::vector<std::vector<int64_t>>& sources, const SearchResults& a,
                     const SearchResults& b, double tie, const std::string& what) {
  const int64_t eos = model.config().eos_id;
  int same = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto x = WithEos(a[i][0], eos);
    const auto y = WithEos(b[i][0], eos);
    if (x == y) {
      ++same;
      continue;
    }
    size_t k = 0;
    while (k < x.size() && k < y.size() && x[k] == y[k]) ++k;
    if (k == x.size() || k == y.size()) {
      ADD_FAILURE() << what << ", sentence " << i << ": one output is a prefix of the other";
      continue;
    }
    std::vector<int64_t> prefix = {model.config().bos_id};
    prefix.insert(prefix.end(), x.begin(), x.begin() + k);
    auto source = torch::tensor(sources[i], torch::kLong).view({1, -1}).to(device);
    auto target = torch::tensor(prefix, torch::kLong).view({1, -1}).to(device);
    auto log_probs = torch::log_softmax(
        model.Forward(source, target).select(1, k).to(torch::kCPU, torch::kFloat32), -1)[0];
    const double margin = std::abs(log_probs[x[k]].item<double>() - log_probs[y[k]].item<double>());
    std::cout << what << ", sentence " << i << ": differs at token " << k << " (" << x[k] << " vs "
              << y[k] << "), log-prob margin " << margin << "\n";
    EXPECT_LT(margin, tie) << what << ", sentence " << i << ": not a near-tie";
  }
  std::cout << what << ": " << same << " of " << sources.size() << " sequences identical\n";
  return same;
}

// The first `count` lines of captions/test.de, or none without data.
std::vector<std::string> CaptionLines(size_t count) {
  const char* data = std::getenv("QUANTMT_DATA_DIR");
  if (data == nullptr) return {};
  auto lines = ReadLines(std::string(data) + "/de-en/captions/test.de", count);
  if (lines.empty()) lines = ReadLines(std::string(data) + "/captions/test.de", count);
  return lines;
}

std::string DefaultModelDir() {
  const char* source_dir = std::getenv("QUANTMT_SOURCE_DIR");
  return std::string(source_dir ? source_dir : ".") + "/models/default";
}

TEST(CudaGraphDecoderTest, DefaultModelMatchesCpuAndEagerCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto lines = CaptionLines(200);
  if (lines.empty()) GTEST_SKIP() << "no captions/test.de under QUANTMT_DATA_DIR";
  const std::string model_dir = DefaultModelDir();
  auto loaded = LoadTransformer(model_dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Transformer& model = **loaded;
  model.eval();
  std::string error;
  auto tokenizer = Tokenizer::Load(model_dir + "/spm.model", &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  std::vector<std::vector<int64_t>> sources;
  for (const std::string& line : lines) {
    std::vector<int> ids;
    ASSERT_TRUE(tokenizer->Encode(line, &ids, &error)) << error;
    sources.emplace_back(ids.begin(), ids.end());
    sources.back().push_back(model.config().eos_id);
  }
  torch::NoGradGuard no_grad;
  SearchOptions options;
  options.max_length = 128;
  const SearchResults cpu = GreedySearch(model, sources, options, torch::kCPU);

  const torch::Device cuda(torch::kCUDA);
  for (auto dtype : {torch::kFloat32, torch::kFloat16}) {
    model.to(cuda, dtype);
    const std::string name = dtype == torch::kFloat32 ? "float32" : "float16";
    const SearchResults eager = GreedySearch(model, sources, options, cuda);
    SearchResults graphs;
    {
      auto decoder = CudaGraphDecoder::Create(model);
      ASSERT_TRUE(decoder.ok()) << decoder.status();
      auto results = (*decoder)->GreedySearch(sources, options);
      ASSERT_TRUE(results.ok()) << results.status();
      graphs = std::move(*results);
    }
    // float32 differs from the CPU by rounding alone; float16 carries about
    // three significant digits, so its near-ties are wider.
    const double tie = dtype == torch::kFloat32 ? 1e-3 : 5e-2;
    const int same_as_eager =
        CompareExplained(model, cuda, sources, eager, graphs, tie, name + " graphs vs eager CUDA");
    if (dtype == torch::kFloat32) {
      CompareExplained(model, cuda, sources, cpu, graphs, tie, name + " graphs vs CPU float32");
    }
    // Near-ties are rare: most sentences come out identical.
    EXPECT_GE(same_as_eager, static_cast<int>(sources.size()) * 9 / 10) << name;
  }
}

}  // namespace
}  // namespace quantmt

namespace quantmt {
namespace {

// The Translator on a GPU decodes greedy requests with CUDA graphs: its
// float32 translations are the CPU's.
TEST(CudaGraphDecoderTest, TranslatorOnCudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto lines = CaptionLines(100);
  if (lines.empty()) GTEST_SKIP() << "no captions/test.de under QUANTMT_DATA_DIR";
  RuntimeOptions cpu_options;
  cpu_options.num_threads = 4;
  auto cpu = Translator::Create(DefaultModelDir(), cpu_options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  RuntimeOptions gpu_options;
  gpu_options.device = DeviceKind::kCuda;
  gpu_options.compute_type = "float32";
  auto gpu = Translator::Create(DefaultModelDir(), gpu_options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  for (int beam : {1, 4}) {
    TranslationOptions options;
    options.beam_size = beam;
    options.num_hypotheses = beam > 1 ? 2 : 1;
    options.max_batch_size = 64;  // two slices
    auto expected = (*cpu)->Translate(lines, options);
    ASSERT_TRUE(expected.ok()) << expected.status();
    auto actual = (*gpu)->Translate(lines, options);
    ASSERT_TRUE(actual.ok()) << actual.status();
    int same = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      ASSERT_EQ((*actual)[i].hypotheses.size(), (*expected)[i].hypotheses.size());
      const std::string& e = (*expected)[i].hypotheses[0].text;
      const std::string& a = (*actual)[i].hypotheses[0].text;
      if (e == a) {
        ++same;
      } else {
        std::cout << "beam " << beam << ", sentence " << i << ": CPU \"" << e << "\", GPU \"" << a
                  << "\"\n";
      }
    }
    std::cout << "Translator float32, beam " << beam
              << ", CUDA (graphs for greedy) vs CPU: " << same << " of " << lines.size()
              << " translations identical\n";
    // Rounding differs between the two devices; a near-tie may go either way.
    EXPECT_GE(same, static_cast<int>(lines.size()) * 98 / 100) << "beam " << beam;
  }
}

}  // namespace
}  // namespace quantmt
