// eddy_serve as users run it: a replica process over a directory of versions,
// and its client mode (--replica) asking for status, predictions, pin and unpin.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/serving/serving_test_util.h"
#include "tests/testing/subprocess.h"

namespace eddy {
namespace {

using namespace std::chrono_literals;
using testing::Subprocess;

const std::string kServe = std::string(EDDY_BIN_DIR) + "/eddy_serve";

struct Result {
  int code = -1;
  std::string output;
};

Result Client(std::vector<std::string> args, const std::string& rows_file = "") {
  std::vector<std::string> argv = {kServe};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!rows_file.empty()) argv.push_back("--rows=" + rows_file);
  Subprocess p(argv);
  auto code = p.WaitForExit(30s);
  return {code.value_or(-1), p.output()};
}

TEST(ServeCliTest, ServesAVersionDirectoryAndAnswersItsClientMode) {
  testing::TempDir root, work;
  testing::TestModel m;
  // Every weight 0: each row's probability is sigmoid(0) = 0.5.
  testing::WriteVersion(root.path(), m, 1, 0, testing::UniformContent(m, {}, 0.0f));
  testing::WriteVersion(root.path(), m, 2, 1, testing::UniformContent(m, {}, 0.0f));
  Subprocess serve({kServe, "--model_dir=" + root.path(), "--port=0"});
  auto line = serve.WaitForOutput("predictions on tcp://", 30s);
  ASSERT_TRUE(line.has_value()) << serve.output();
  const size_t at = line->find("tcp://");
  const std::string endpoint = line->substr(at, line->find(' ', at) - at);
  ASSERT_TRUE(serve.WaitForOutput("loaded version 2", 30s).has_value()) << serve.output();
  const std::string replica = "--replica=" + endpoint;

  Result status = Client({replica, "--command=status"});
  ASSERT_EQ(status.code, 0) << status.output;
  EXPECT_NE(status.output.find("current_version: 2"), std::string::npos) << status.output;

  const std::string rows = work.path() + "/rows.txt";
  {
    std::ofstream out(rows);
    out << "1 0:5:1 1:6:1 2:7:1\n0 0:8:1\n";
  }
  Result predicted = Client({replica, "--command=predict"}, rows);
  ASSERT_EQ(predicted.code, 0) << predicted.output;
  EXPECT_NE(predicted.output.find("0.500000\n0.500000\n# version 2"), std::string::npos)
      << predicted.output;

  Result pinned = Client({replica, "--command=pin", "--model_version=1"});
  ASSERT_EQ(pinned.code, 0) << pinned.output;
  EXPECT_NE(pinned.output.find("pinned_version: 1"), std::string::npos) << pinned.output;
  predicted = Client({replica, "--command=predict"}, rows);
  EXPECT_NE(predicted.output.find("# version 1"), std::string::npos) << predicted.output;
  Result unpinned = Client({replica, "--command=unpin"});
  EXPECT_NE(unpinned.output.find("current_version: 2"), std::string::npos) << unpinned.output;

  // Mistakes: named, with a non-zero exit; the replica keeps serving.
  Result bad = Client({replica, "--command=pin"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("needs --model_version"), std::string::npos) << bad.output;
  bad = Client({replica, "--command=frobnicate"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("unknown --command=frobnicate"), std::string::npos) << bad.output;
  {
    std::ofstream out(rows);
    out << "not a row\n";
  }
  bad = Client({replica, "--command=predict"}, rows);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.output.find("row 0"), std::string::npos) << bad.output;
  status = Client({replica, "--command=status"});
  EXPECT_NE(status.output.find("predict_errors: 1"), std::string::npos) << status.output;
  Result neither = Client({});
  EXPECT_EQ(neither.code, 2);
  EXPECT_NE(neither.output.find("give exactly one of --scheduler"), std::string::npos);

  serve.Kill(SIGTERM);
  auto code = serve.WaitForExit(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << serve.output();
}

}  // namespace
}  // namespace eddy
