// The tokenizer in a program that has the system libprotobuf loaded, as every
// program on LibTorch or gRPC has. SentencePiece bundles its own, older
// protobuf; bound to the system one it aborts while loading a model. The
// plugin keeps them apart (tokenizer_loader.cc), in sanitizer builds too.
#include <google/protobuf/stubs/common.h>
#include <gtest/gtest.h>
#include <link.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/tokenizer.h"

namespace quantmt {
namespace {

bool SystemProtobufLoaded() {
  bool found = false;
  ::dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        if (info->dlpi_name != nullptr && std::strstr(info->dlpi_name, "/libprotobuf.so")) {
          *static_cast<bool*>(data) = true;
        }
        return 0;
      },
      &found);
  return found;
}

TEST(TokenizerBesideProtobufTest, LoadsEncodesAndDecodes) {
  // Uses libprotobuf, so that the linker keeps it and the loader maps it.
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  ASSERT_TRUE(SystemProtobufLoaded());
  const char* source_dir = std::getenv("QUANTMT_SOURCE_DIR");
  if (source_dir == nullptr) GTEST_SKIP() << "QUANTMT_SOURCE_DIR not set (ctest sets it)";
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer =
      Tokenizer::Load(std::string(source_dir) + "/models/default/spm.model", &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  std::vector<int> ids;
  ASSERT_TRUE(tokenizer->Encode("Ein kleiner Hund rennt.", &ids, &error)) << error;
  EXPECT_GT(ids.size(), 2u);
  EXPECT_EQ(tokenizer->Decode(ids), "Ein kleiner Hund rennt.");
}

}  // namespace
}  // namespace quantmt
