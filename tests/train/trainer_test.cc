// The FP trainer on CPU: batching, loss, schedule, a tiny copy task that must
// learn, exact kill/resume, and checkpoint averaging.
#include "train/common/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "model/model_io.h"
#include "train/common/data.h"

namespace quantmt::train {
namespace {

namespace fs = std::filesystem;

// Programs that load LibTorch must not link SentencePiece (see
// tokenizer_loader.cc), so the tokenizer is trained by our own tool.
bool TrainTokenizer(const fs::path& corpus, const fs::path& dir, int vocab_size) {
  const std::string command = std::string(QUANTMT_SPM_TRAIN_BIN) +
                              " --quiet --input=" + corpus.string() +
                              " --model_dir=" + dir.string() +
                              " --vocab_size=" + std::to_string(vocab_size) + " > /dev/null";
  return std::system(command.c_str()) == 0;
}

// ------------------------------------------------------------------ batching

std::vector<Example> SyntheticExamples(int count) {
  std::vector<Example> examples;
  uint32_t state = 99;
  for (int i = 0; i < count; ++i) {
    state = state * 1103515245u + 12345u;
    const int source_length = 1 + static_cast<int>((state >> 16) % 30);
    const int target_length = 1 + static_cast<int>((state >> 8) % 30);
    Example example;
    example.source.assign(source_length, 7);
    example.source.push_back(3);
    example.target.assign(target_length, 8);
    examples.push_back(example);
  }
  return examples;
}

TEST(BatchingTest, RespectsBudgetAndCoversEveryPairOncePerEpoch) {
  const auto examples = SyntheticExamples(500);
  BatchingOptions options;
  options.max_tokens = 200;
  options.chunk_size = 64;
  for (int64_t epoch : {1, 2}) {
    const auto batches = MakeBatches(examples, options, /*seed=*/5, epoch);
    std::multiset<int64_t> seen;
    for (const auto& batch : batches) {
      ASSERT_FALSE(batch.empty());
      EXPECT_LE(BatchCost(examples, batch), options.max_tokens);
      seen.insert(batch.begin(), batch.end());
    }
    ASSERT_EQ(seen.size(), examples.size());
    for (int64_t i = 0; i < static_cast<int64_t>(examples.size()); ++i) {
      EXPECT_EQ(seen.count(i), 1u) << "example " << i;
    }
  }
  // Deterministic in (seed, epoch); another epoch gives another order.
  EXPECT_EQ(MakeBatches(examples, options, 5, 1), MakeBatches(examples, options, 5, 1));
  EXPECT_NE(MakeBatches(examples, options, 5, 1), MakeBatches(examples, options, 5, 2));
}

TEST(BatchingTest, CollatePlacesBosEosAndPadding) {
  std::vector<Example> examples(2);
  examples[0].source = {10, 11, 3};
  examples[0].target = {20};
  examples[1].source = {12, 3};
  examples[1].target = {21, 22, 23};
  const Batch batch = Collate(examples, {0, 1}, SpecialIds{0, 2, 3});
  EXPECT_TRUE(batch.source.equal(torch::tensor({10, 11, 3, 12, 3, 0}, torch::kLong).view({2, 3})));
  EXPECT_TRUE(batch.target_in.equal(
      torch::tensor({2, 20, 0, 0, 2, 21, 22, 23}, torch::kLong).view({2, 4})));
  EXPECT_TRUE(batch.target_out.equal(
      torch::tensor({20, 3, 0, 0, 21, 22, 23, 3}, torch::kLong).view({2, 4})));
  EXPECT_EQ(batch.source_tokens, 5);
  EXPECT_EQ(batch.target_tokens, 6);
}

// ------------------------------------------------------- loss and schedule

TEST(LossTest, LabelSmoothedCrossEntropyMatchesHandComputation) {
  // One sentence, two positions over a vocabulary of 3; position 1 is pad.
  const std::vector<float> row = {1.0f, 2.0f, 0.5f};
  const auto logits = torch::tensor({1.0f, 2.0f, 0.5f, 9.0f, -9.0f, 0.0f}).view({1, 2, 3});
  const auto target = torch::tensor({1, 0}, torch::kLong).view({1, 2});
  const double epsilon = 0.1;
  const LossSums sums = LabelSmoothedCrossEntropy(logits, target, /*pad_id=*/0, epsilon);

  double normalizer = 0;
  for (float x : row) normalizer += std::exp(x);
  std::vector<double> log_p;
  for (float x : row) log_p.push_back(x - std::log(normalizer));
  const double nll = -log_p[1];
  const double uniform = -(log_p[0] + log_p[1] + log_p[2]) / 3.0;
  EXPECT_EQ(sums.tokens, 1);
  EXPECT_NEAR(sums.nll.item<double>(), nll, 1e-5);
  EXPECT_NEAR(sums.loss.item<double>(), (1 - epsilon) * nll + epsilon * uniform, 1e-5);
}

TEST(ScheduleTest, InverseSqrtWarmup) {
  EXPECT_DOUBLE_EQ(InverseSqrtLearningRate(1e-3, 4, 1), 2.5e-4);
  EXPECT_DOUBLE_EQ(InverseSqrtLearningRate(1e-3, 4, 2), 5e-4);
  EXPECT_DOUBLE_EQ(InverseSqrtLearningRate(1e-3, 4, 4), 1e-3);
  EXPECT_DOUBLE_EQ(InverseSqrtLearningRate(1e-3, 4, 16), 5e-4);
  EXPECT_DOUBLE_EQ(InverseSqrtLearningRate(1e-3, 4, 64), 2.5e-4);
}

// --------------------------------------------------------- training runs

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);  // tiny model: threads only add overhead
    dir_ = new fs::path(fs::path(::testing::TempDir()) / "trainer_test");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    // A copy task: target = source, 2-4 words.
    const std::vector<std::string> words = {"der", "die", "das",  "Hund", "Katze", "the",
                                            "dog", "cat", "runs", "man",  "red",   "blue"};
    std::ofstream source(*dir_ / "train.src"), target(*dir_ / "train.tgt");
    uint32_t state = 4242;
    auto next = [&state]() {
      state = state * 1103515245u + 12345u;
      return (state >> 16) & 0x7FFF;
    };
    for (int line = 0; line < 50; ++line) {
      std::string sentence;
      const int length = 2 + static_cast<int>(next() % 3);
      for (int i = 0; i < length; ++i) {
        sentence += (i > 0 ? " " : "") + words[next() % words.size()];
      }
      source << sentence << "\n";
      target << sentence << "\n";
    }
    source.close();
    target.close();
    // The tokenizer learns from more text than the 50 pairs, in the same words.
    {
      std::ofstream corpus(*dir_ / "corpus.txt");
      for (int line = 0; line < 400; ++line) {
        const int length = 2 + static_cast<int>(next() % 6);
        for (int i = 0; i < length; ++i)
          corpus << (i > 0 ? " " : "") << words[next() % words.size()];
        corpus << "\n";
      }
    }
    ASSERT_TRUE(TrainTokenizer(*dir_ / "corpus.txt", *dir_, 30));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static TrainerOptions Options(const std::string& run) {
    TrainerOptions options;
    options.train_source_files = {(*dir_ / "train.src").string()};
    options.train_target_files = {(*dir_ / "train.tgt").string()};
    options.dev_source_file = (*dir_ / "train.src").string();
    options.dev_target_file = (*dir_ / "train.tgt").string();
    options.dev_lines = 10;
    options.tokenizer_path = (*dir_ / "spm.model").string();
    options.output_dir = (*dir_ / run).string();
    fs::remove_all(options.output_dir);
    options.model.d_model = 32;
    options.model.encoder_layers = {{2, 64, 0}};
    options.model.decoder_layers = {{2, 64, 0}};
    options.model.max_source_positions = options.model.max_target_positions = 32;
    options.lr = 5e-3;
    options.warmup = 10;
    options.max_tokens = 128;
    options.validate_every = 0;
    options.save_every = 0;
    options.keep_checkpoints = 2;
    options.average_last = 2;
    options.beam = 1;
    options.log = &log_;
    return options;
  }

  static std::unique_ptr<Trainer> MakeTrainer(const TrainerOptions& options) {
    auto trainer = Trainer::Create(options);
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    return trainer.ok() ? std::move(*trainer) : nullptr;
  }

  static fs::path* dir_;
  static std::ostringstream log_;
};
fs::path* TrainerTest::dir_ = nullptr;
std::ostringstream TrainerTest::log_;

double Mean(const std::vector<double>& values, size_t begin, size_t end) {
  double sum = 0;
  for (size_t i = begin; i < end; ++i) sum += values[i];
  return sum / static_cast<double>(end - begin);
}

TEST_F(TrainerTest, CopyTaskLossFallsAndExportLoads) {
  TrainerOptions options = Options("copy");
  options.max_steps = 150;
  options.save_every = 75;
  auto trainer = MakeTrainer(options);
  ASSERT_NE(trainer, nullptr);
  auto summary = trainer->Train();
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_EQ(summary->losses.size(), 150u);
  EXPECT_EQ(summary->step, 150);
  const double first = Mean(summary->losses, 0, 10);
  const double last = Mean(summary->losses, 140, 150);
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
  EXPECT_GE(summary->best_bleu, 0.0);  // validated once, at the end

  auto final_dir = trainer->Export();
  ASSERT_TRUE(final_dir.ok()) << final_dir.status();
  auto config = ReadModelConfig(*final_dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->weights_dtype, "float16");
  EXPECT_NE(config->provenance_json.find("\"dev_bleu\""), std::string::npos);
  EXPECT_NE(config->provenance_json.find("step_75"), std::string::npos);
  EXPECT_NE(config->provenance_json.find("step_150"), std::string::npos);
  EXPECT_TRUE(LoadTransformer(*final_dir).ok());
  EXPECT_TRUE(fs::exists(fs::path(*final_dir) / "spm.model"));
}

torch::Tensor Flatten(Transformer& model) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : model.parameters()) parts.push_back(p.detach().flatten());
  return torch::cat(parts);
}

TEST_F(TrainerTest, ResumeAfterKillMatchesUninterruptedRun) {
  // Dropout on: the resumed run must also draw the same masks.
  TrainerOptions straight = Options("straight");
  straight.max_steps = 20;
  straight.save_every = 10;
  straight.dropout = {0.1, 0.1, 0.1};
  auto a = MakeTrainer(straight);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->Train().ok());

  TrainerOptions halves = straight;
  halves.output_dir = (*dir_ / "halves").string();
  fs::remove_all(halves.output_dir);
  halves.max_steps = 10;  // the "kill": the run ends at step 10
  {
    auto first = MakeTrainer(halves);
    ASSERT_NE(first, nullptr);
    ASSERT_TRUE(first->Train().ok());
  }
  halves.max_steps = 20;
  // Without --resume, existing checkpoints are never overwritten.
  EXPECT_FALSE(Trainer::Create(halves).ok());
  halves.resume = true;
  auto second = MakeTrainer(halves);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->step(), 10);
  auto summary = second->Train();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->first_step, 10);
  EXPECT_EQ(summary->step, 20);
  EXPECT_GT(summary->epoch, 1);  // the batches of several epochs were rebuilt

  const auto expected = Flatten(a->model());
  const auto actual = Flatten(second->model());
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-6))
      << "max difference " << (actual - expected).abs().max().item<double>();
}

TEST_F(TrainerTest, KeepsOnlyTheLastCheckpoints) {
  TrainerOptions options = Options("keep");
  options.max_steps = 12;
  options.save_every = 3;
  options.dev_source_file.clear();  // no validation: only the checkpoints matter here
  auto trainer = MakeTrainer(options);
  ASSERT_NE(trainer, nullptr);
  ASSERT_TRUE(trainer->Train().ok());
  const auto checkpoints = ListCheckpoints(options.output_dir);
  ASSERT_EQ(checkpoints.size(), 2u);
  EXPECT_EQ(checkpoints[0].first, 9);
  EXPECT_EQ(checkpoints[1].first, 12);
  EXPECT_FALSE(fs::exists(fs::path(options.output_dir) / "checkpoints" / "step_3"));
  // Without a dev set the export still works, with no BLEU in its provenance.
  auto final_dir = trainer->Export();
  ASSERT_TRUE(final_dir.ok()) << final_dir.status();
  auto config = ReadModelConfig(*final_dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->provenance_json.find("dev_bleu"), std::string::npos);
}

TEST_F(TrainerTest, AveragingTwoCheckpointsGivesTheMean) {
  ModelConfig config;
  config.d_model = 16;
  config.encoder_layers = {{2, 32, 0}};
  config.decoder_layers = {{2, 32, 0}};
  config.source_vocab_size = config.target_vocab_size = 20;
  std::vector<std::shared_ptr<Transformer>> models;
  std::vector<std::string> dirs;
  for (int i = 0; i < 2; ++i) {
    torch::manual_seed(100 + i);
    auto model = Transformer::Create(config);
    ASSERT_TRUE(model.ok());
    dirs.push_back((*dir_ / ("average_" + std::to_string(i))).string());
    ASSERT_TRUE(SaveModelDirectory(dirs.back(), config, **model).ok());
    models.push_back(*model);
  }
  auto averaged = Transformer::Create(config);
  ASSERT_TRUE(averaged.ok());
  ASSERT_TRUE(AverageCheckpoints(dirs, averaged->get()).ok());
  const auto mean = (Flatten(*models[0]) + Flatten(*models[1])) / 2;
  EXPECT_TRUE(torch::allclose(Flatten(**averaged), mean, 1e-6, 1e-7));
  EXPECT_FALSE(AverageCheckpoints({}, averaged->get()).ok());
  EXPECT_FALSE(AverageCheckpoints({(*dir_ / "missing").string()}, averaged->get()).ok());
}

TEST_F(TrainerTest, ListsOnlyCompleteCheckpointsInStepOrder) {
  const fs::path root = *dir_ / "listing" / "checkpoints";
  for (const char* name : {"step_20", "step_3", ".step_30.tmp", "step_x", "step_40"}) {
    fs::create_directories(root / name);
    if (std::string(name) != "step_40") std::ofstream(root / name / "trainer_state.json") << "{}";
  }
  const auto checkpoints = ListCheckpoints((*dir_ / "listing").string());
  ASSERT_EQ(checkpoints.size(), 2u);
  EXPECT_EQ(checkpoints[0].first, 3);
  EXPECT_EQ(checkpoints[1].first, 20);
}

TEST_F(TrainerTest, BadInputsAreErrorsNotCrashes) {
  TrainerOptions options = Options("bad");
  options.max_steps = 1;
  options.tokenizer_path = (*dir_ / "no_such.model").string();
  EXPECT_FALSE(Trainer::Create(options).ok());
  options = Options("bad");
  options.train_source_files.push_back("extra");
  EXPECT_FALSE(Trainer::Create(options).ok());
  options = Options("bad");
  options.dev_target_file = (*dir_ / "corpus.txt").string();  // 400 lines vs 50: capped at 10
  options.dev_lines = 0;
  EXPECT_FALSE(Trainer::Create(options).ok());
  options = Options("bad");
  options.model.encoder_layers = {{7, 64, 0}};  // 7 heads do not divide d_model 32
  EXPECT_FALSE(Trainer::Create(options).ok());
}

}  // namespace
}  // namespace quantmt::train
