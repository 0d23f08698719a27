// End-to-end runs of the eddy_gen binary into a temporary directory.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "worker/generator/generator.h"

namespace eddy::worker {
namespace {

namespace fs = std::filesystem;

class EddyGenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "eddy_gen_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs eddy_gen with `args`; returns its exit code. stdout/stderr go to files in dir_.
  int Run(const std::string& args) {
    const std::string cmd = std::string(EDDY_BIN_DIR) + "/eddy_gen " + args + " >" +
                            Path("stdout") + " 2>" + Path("stderr");
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  fs::path dir_;
};

// The first `rows` rows of the library's stream for `o`, as eddy_gen writes them.
std::string LibraryRows(const GeneratorOptions& o, int rows) {
  ClickStreamGenerator gen(o);
  std::string out;
  for (int i = 0; i < rows; ++i) {
    float p = 0;
    gen.AppendRow(&out, &p);
  }
  return out;
}

TEST_F(EddyGenTest, WritesTheLibraryStreamTruthAndReport) {
  ASSERT_EQ(Run("--rows=20000 --seed=5 --ctr=0.2 --drift_every=5000 --max_vocab=20000 --out=" +
                Path("g.tsv") + " --truth_out=" + Path("g.truth") + " --report"),
            0)
      << Read(Path("stderr"));
  GeneratorOptions o;
  o.seed = 5;
  o.ctr = 0.2;
  o.drift_every = 5000;
  o.max_vocab = 20000;
  ClickStreamGenerator gen(o);
  std::string rows, truth;
  for (int i = 0; i < 20000; ++i) {
    float p = 0;
    gen.AppendRow(&rows, &p);
    AppendProbabilityLine(p, &truth);
  }
  EXPECT_EQ(Read(Path("g.tsv")), rows);
  EXPECT_EQ(Read(Path("g.truth")), truth);
  const std::string report = Read(Path("stdout"));
  EXPECT_NE(report.find("best_auc="), std::string::npos) << report;
  EXPECT_NE(report.find("best_logloss="), std::string::npos) << report;
  EXPECT_NE(report.find("ctr="), std::string::npos) << report;
  EXPECT_NE(report.find("drifts=3"), std::string::npos) << report;
}

TEST_F(EddyGenTest, StdoutOutputWithReportOnStderr) {
  ASSERT_EQ(Run("--rows=1000 --max_vocab=1000 --out=- --report"), 0) << Read(Path("stderr"));
  GeneratorOptions o;
  o.max_vocab = 1000;
  EXPECT_EQ(Read(Path("stdout")), LibraryRows(o, 1000));
  EXPECT_NE(Read(Path("stderr")).find("best_auc="), std::string::npos);
}

TEST_F(EddyGenTest, PresetWritesThePresetStreamAndExplicitFlagsOverrideIt) {
  ASSERT_EQ(Run("--preset=criteo_c --rows=3000 --seed=4 --drift_every=1000 --out=" + Path("p.tsv") +
                " --report"),
            0)
      << Read(Path("stderr"));
  GeneratorOptions o;
  ASSERT_TRUE(ApplyPreset("criteo_c", &o).ok());
  o.seed = 4;
  o.drift_every = 1000;
  EXPECT_EQ(Read(Path("p.tsv")), LibraryRows(o, 3000));
  const std::string report = Read(Path("stdout"));
  EXPECT_NE(report.find("preset=criteo_c"), std::string::npos) << report;
  EXPECT_NE(report.find("drifts=2"), std::string::npos) << report;
  EXPECT_NE(report.find("best_auc="), std::string::npos) << report;
  EXPECT_EQ(Run("--preset=criteo_z --rows=10 --out=" + Path("x.tsv")), 1);
  EXPECT_NE(Read(Path("stderr")).find("criteo_z"), std::string::npos) << Read(Path("stderr"));
}

TEST_F(EddyGenTest, BadFlagsAndPathsExitOneWithMessage) {
  EXPECT_EQ(Run("--rows=10 --ctr=2 --out=" + Path("x.tsv")), 1);
  EXPECT_NE(Read(Path("stderr")).find("ctr"), std::string::npos) << Read(Path("stderr"));
  EXPECT_EQ(Run("--rows=-5 --out=" + Path("x.tsv")), 1);
  EXPECT_NE(Read(Path("stderr")).find("--rows"), std::string::npos);
  EXPECT_EQ(Run("--rows=10 --out=" + Path("no/such/dir/x.tsv")), 1);
  EXPECT_NE(Read(Path("stderr")).find("cannot open"), std::string::npos) << Read(Path("stderr"));
  EXPECT_EQ(Run("--rows=10 --out=" + Path("x.tsv") + " --truth_out=" + Path("no/such/t")), 1);
  EXPECT_EQ(Run("--rows=10 --out=" + Path("x.tsv") + " stray_argument"), 1);
  EXPECT_EQ(Run("--no_such_flag=1"), 1);
}

}  // namespace
}  // namespace eddy::worker
