// TrainJobTest: runs the real eddy_gen and eddy_train binaries in a fresh
// temporary directory (local mode or under mpirun).
#ifndef EDDY_TESTS_WORKER_TRAIN_JOB_FIXTURE_H_
#define EDDY_TESTS_WORKER_TRAIN_JOB_FIXTURE_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model_store/materialize.h"
#include "tests/testing/subprocess.h"

namespace eddy {

using testing::Subprocess;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

inline const std::string kBin = EDDY_BIN_DIR;
inline const std::vector<std::string> kMpiEnv = {
    "OMPI_ALLOW_RUN_AS_ROOT=1",       "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
    "OMPI_MCA_btl=self,tcp",          "OMPI_MCA_btl_tcp_if_include=lo",
    "OMPI_MCA_oob_tcp_if_include=lo", "OMPI_MCA_rmaps_base_oversubscribe=1",
    "ASAN_OPTIONS=detect_leaks=0"};

// A small model so the job is quick even under sanitizers.
inline const std::vector<std::string> kSmallModel = {"--model=deepfm", "--emb_dim=8", "--hidden=32,16",
                                              "--batch_size=256", "--progress_interval_ms=200"};

class TrainJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("eddy_train_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Generates `rows` rows into dir_/name; returns the path.
  std::string Generate(const std::string& name, int rows) {
    const std::string path = (dir_ / name).string();
    Subprocess gen({kBin + "/eddy_gen", "--rows=" + std::to_string(rows), "--seed=5",
                    "--max_vocab=500", "--signal=2", "--ctr=0.2", "--drift_every=0",
                    "--out=" + path});
    auto code = gen.WaitForExit(120s);
    EXPECT_TRUE(code.has_value() && *code == 0) << gen.output();
    return path;
  }

  // Runs eddy_train with `flags`; returns exit code and output.
  std::pair<int, std::string> Train(std::vector<std::string> flags, bool mpi = false,
                                    int ranks = 4) {
    std::vector<std::string> argv;
    if (mpi) argv = {"/usr/bin/mpirun", "--oversubscribe", "-np", std::to_string(ranks)};
    argv.push_back(kBin + "/eddy_train");
    argv.insert(argv.end(), flags.begin(), flags.end());
    Subprocess p(argv, mpi ? kMpiEnv : std::vector<std::string>{});
    auto code = p.WaitForExit(280s);
    EXPECT_TRUE(code.has_value()) << p.output();
    return {code.value_or(-1), p.output()};
  }

  static double SummaryAuc(const std::string& out) {
    const std::string key = "progressive validation, since start: ";
    size_t at = out.find(key);
    if (at == std::string::npos) return 0;
    at = out.find("auc=", at);
    return at == std::string::npos ? 0 : std::atof(out.c_str() + at + 4);
  }

  fs::path dir_;
};

// The value of "name": in a one-line JSON record, up to the next ',' or '}'
// (nullopt when absent). Enough for the flat numbers of --metrics_out records.
inline std::optional<std::string> JsonValue(const std::string& record, const std::string& name) {
  const std::string key = "\"" + name + "\":";
  size_t at = record.find(key);
  if (at == std::string::npos) return std::nullopt;
  at += key.size();
  return record.substr(at, record.find_first_of(",}", at) - at);
}

// The last record of a --metrics_out file that has "final":true ("" if none).
inline std::string FinalMetricsRecord(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.find("\"final\":true") != std::string::npos) last = line;
  }
  return last;
}

// "rows" and "skipped_rows" of the final record (0 when absent, with a failure).
inline std::pair<uint64_t, uint64_t> FinalRows(const std::string& metrics) {
  const std::string last = FinalMetricsRecord(metrics);
  std::optional<std::string> rows = JsonValue(last, "rows");
  std::optional<std::string> skipped = JsonValue(last, "skipped_rows");
  EXPECT_TRUE(rows && skipped) << metrics << ": " << last;
  return {rows ? std::stoull(*rows) : 0, skipped ? std::stoull(*skipped) : 0};
}

// Every sparse row, optimizer state and dense tensor of `a` equals `b`'s, bit for bit.
inline void ExpectSameModel(const model_store::MaterializedModel& a,
                     const model_store::MaterializedModel& b) {
  ASSERT_EQ(a.sparse.size(), b.sparse.size());
  for (const auto& [name, rows] : a.sparse) {
    const model_store::SparseRows& other = b.sparse.at(name);
    ASSERT_EQ(rows.size(), other.size()) << name;
    for (uint64_t key : rows.keys()) {
      auto v = rows.Find(key), w = other.Find(key);
      ASSERT_EQ(v.size(), w.size()) << name << " key " << key;
      for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], w[i]) << name << " key " << key;
      auto s = rows.FindState(key), t = other.FindState(key);
      ASSERT_EQ(s.size(), t.size());
      for (size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], t[i]) << name << " state " << key;
    }
  }
  ASSERT_EQ(a.dense.size(), b.dense.size());
  for (const auto& [name, t] : a.dense) {
    const auto& u = b.dense.at(name);
    ASSERT_EQ(t.values, u.values) << name;
    ASSERT_EQ(t.state, u.state) << name;
  }
}

}  // namespace eddy

#endif  // EDDY_TESTS_WORKER_TRAIN_JOB_FIXTURE_H_
