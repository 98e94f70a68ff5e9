#include "server/config/server_options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"

namespace quantmt::server {
namespace {

ServerOptions Parse(std::vector<std::string> args) {
  CLI::App app;
  ServerOptions options;
  AddServerFlags(app, &options);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  app.parse(args);
  return options;
}

TEST(ServerOptionsTest, DefaultsAreValid) {
  const ServerOptions options = Parse({});
  EXPECT_TRUE(ValidateServerOptions(options).ok());
  EXPECT_EQ(options.port, 50051);
  EXPECT_EQ(options.models, std::vector<std::string>{"default"});
  EXPECT_TRUE(options.cuda_graphs);
  EXPECT_FALSE(Parse({"--cuda_graphs", "false"}).cuda_graphs);
}

TEST(ServerOptionsTest, FlagsEnvironmentAndConfigFile) {
  const auto path = std::filesystem::temp_directory_path() / "quantmt_server_options_test.toml";
  std::ofstream(path) << "port = 6000\nmetrics_port = 6001\nmodels = [\"a\", \"b=dir/b\"]\n"
                         "max_sentences = 8\n";
  setenv("QUANTMT_ADMIN_TOKEN", "secret", 1);
  const ServerOptions options = Parse({"--config", path.string(), "--metrics_port", "7000"});
  unsetenv("QUANTMT_ADMIN_TOKEN");
  std::filesystem::remove(path);
  EXPECT_EQ(options.port, 6000);             // from the file
  EXPECT_EQ(options.metrics_port, 7000);     // the flag wins over the file
  EXPECT_EQ(options.admin_token, "secret");  // from the environment
  EXPECT_EQ(options.limits.max_sentences, 8);
  ASSERT_EQ(options.models.size(), 2u);
  EXPECT_EQ(ParseModelEntry(options.models[1]).name, "b");
  EXPECT_EQ(ParseModelEntry(options.models[1]).directory, "dir/b");
  EXPECT_EQ(ParseModelEntry(options.models[0]).directory, "a");
  EXPECT_TRUE(ValidateServerOptions(options).ok());
}

TEST(ServerOptionsTest, ConfigFileWinsOverEnvironment) {
  const auto path = std::filesystem::temp_directory_path() / "quantmt_server_options_env.toml";
  std::ofstream(path) << "max_sentences = 8\n";
  setenv("QUANTMT_MAX_SENTENCES", "9", 1);
  setenv("QUANTMT_MAX_LENGTH", "100", 1);
  const ServerOptions options = Parse({"--config", path.string()});
  unsetenv("QUANTMT_MAX_SENTENCES");
  unsetenv("QUANTMT_MAX_LENGTH");
  std::filesystem::remove(path);
  EXPECT_EQ(options.limits.max_sentences, 8);  // the file, not the environment
  EXPECT_EQ(options.limits.max_length, 100);   // not in the file: the environment
}

TEST(ServerOptionsTest, UnknownConfigKeyIsAnError) {
  const auto path = std::filesystem::temp_directory_path() / "quantmt_server_options_typo.toml";
  std::ofstream(path) << "max_sentencez = 8\n";
  try {
    Parse({"--config", path.string()});
    ADD_FAILURE() << "a misspelt key was accepted";
  } catch (const CLI::ConfigError& error) {
    EXPECT_TRUE(absl::StrContains(error.what(), "max_sentencez")) << error.what();
  }
  std::filesystem::remove(path);
}

TEST(ServerOptionsTest, OutOfRangeSettingsAreNamed) {
  auto expect_invalid = [](std::vector<std::string> args, const std::string& part) {
    absl::Status status = ValidateServerOptions(Parse(args));
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << part;
    EXPECT_TRUE(absl::StrContains(status.message(), part)) << status;
  };
  expect_invalid({"--port", "70000"}, "--port is 70000");
  expect_invalid({"--replicas", "-1"}, "--replicas");
  expect_invalid({"--port", "9000", "--metrics_port", "9000"}, "must differ");
  expect_invalid({"--tls_cert", "cert.pem"}, "--tls_cert and --tls_key go together");
  expect_invalid({"--max_beam_size", "4", "--default_beam_size", "5"}, "--default_beam_size");
  expect_invalid({"--models", "=dir"}, "NAME or NAME=DIR");
  expect_invalid({"--max_sentence_tokens", "-1"}, "--max_sentence_tokens is -1");
}

TEST(ServerOptionsTest, UnknownFlagIsAParseError) {
  EXPECT_THROW(Parse({"--no_such_flag", "1"}), CLI::ParseError);
}

}  // namespace
}  // namespace quantmt::server
