// On the shipped default model over real sentences, the CUDA graph decoder
// gives GreedySearch's results (against CPU float32 and eager CUDA, float32
// and float16, where every difference must start at a near-tie), and the
// Translator on a GPU gives the CPU's translations. (Small random models,
// sentences joining and leaving: cuda_batch_decoder_test.cc.) Skips without
// a GPU or without QUANTMT_DATA_DIR.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>

#include "decoding/cuda_batch_decoder.h"
#include "decoding/search.h"
#include "model/model_io.h"
#include "quantmt/engine/tokenizer.h"
#include "quantmt/engine/translator.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

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

// Every source through `decoder` at once, stepped until all have finished;
// n-best lists in input order.
SearchResults DecodeAll(BatchDecoder& decoder, const std::vector<std::vector<int64_t>>& sources,
                        const SearchOptions& options) {
  std::vector<DecodeInput> inputs;
  for (size_t i = 0; i < sources.size(); ++i) {
    inputs.push_back({static_cast<int64_t>(i), sources[i], options});
  }
  decoder.Add(inputs);
  SearchResults results(sources.size());
  while (!decoder.empty()) {
    for (DecodeOutput& output : decoder.Step()) results[output.id] = std::move(output.hypotheses);
  }
  return results;
}

TEST(CudaParityTest, DefaultModelMatchesCpuAndEagerCuda) {
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
      auto decoder = CreateCudaBatchDecoder(model);
      ASSERT_TRUE(decoder.ok()) << decoder.status();
      graphs = DecodeAll(**decoder, sources, options);
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

// The Translator on a GPU decodes on CUDA graphs (greedy and beam): its
// float32 translations are the CPU's.
TEST(CudaParityTest, TranslatorOnCudaMatchesCpu) {
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
              << ", CUDA graphs vs CPU: " << same << " of " << lines.size()
              << " translations identical\n";
    // Rounding differs between the two devices; a near-tie may go either way.
    EXPECT_GE(same, static_cast<int>(lines.size()) * 98 / 100) << "beam " << beam;
  }
}

}  // namespace
}  // namespace quantmt
