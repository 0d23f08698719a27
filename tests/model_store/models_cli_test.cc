// eddy_models as users run it: on versions written by the test, the real binary
// lists, shows, verifies, pins, prunes, deletes and exports, and explains bad
// flags and unknown versions with a non-zero exit code.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model_store/materialize.h"
#include "model_store/retention.h"
#include "model_store/version_dir.h"
#include "model_store/version_writer.h"
#include "tests/testing/subprocess.h"

namespace eddy::model_store {
namespace {

using testing::Subprocess;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using proto::Manifest;

const std::string kModels = std::string(EDDY_BIN_DIR) + "/eddy_models";

struct CliRun {
  int code;
  std::string output;  // stdout and stderr
};

class ModelsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("eddy_models_cli_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    root_ = (dir_ / "ckpt").string();
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun Models(std::vector<std::string> args) {
    args.insert(args.begin(), kModels);
    Subprocess p(args);
    auto code = p.WaitForExit(120s);
    EXPECT_TRUE(code.has_value()) << p.output();
    return {code.value_or(-1), p.output()};
  }
  // Runs a command on root_ that must succeed.
  std::string Ok(std::vector<std::string> args) {
    args.push_back("--model_dir=" + root_);
    CliRun r = Models(args);
    EXPECT_EQ(r.code, 0) << r.output;
    return r.output;
  }
  // Runs a command on root_ that must fail with `code` and mention `words`.
  void Fails(std::vector<std::string> args, int code, const std::string& words) {
    args.push_back("--model_dir=" + root_);
    CliRun r = Models(args);
    EXPECT_EQ(r.code, code) << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos)
        << "output does not mention '" << words << "':\n"
        << r.output;
  }

  // A training version: table "emb" (dim 8, AdaGrad state of 8 floats) over two
  // shards, dense "w" (12 values); keys [first, first + n).
  void Write(uint64_t version, uint64_t parent, uint64_t first = 0, uint64_t n = 200,
             std::vector<uint64_t> tombstones = {}) {
    auto w =
        VersionWriter::Begin(root_, version, parent, /*serving=*/false, Manifest::ENCODING_FLOAT32);
    ASSERT_TRUE(w.ok()) << w.status();
    std::mt19937 rng(static_cast<uint32_t>(version));
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (uint32_t shard = 0; shard < 2; ++shard) {
      SparseShard s;
      s.table = "emb";
      s.shard = shard;
      s.dim = 8;
      s.state_floats = 8;
      for (uint64_t k = first; k < first + n; ++k) {
        if (k % 2 != shard) continue;
        s.keys.push_back(k);
        for (int j = 0; j < 8; ++j) s.values.push_back(normal(rng));
        for (int j = 0; j < 8; ++j) s.state.push_back(std::fabs(normal(rng)));
      }
      for (uint64_t t : tombstones) {
        if (t % 2 == shard) s.tombstones.push_back(t);
      }
      ASSERT_TRUE(w->AddSparse(s).ok());
      DenseSlice d;
      d.table = "w";
      d.shard = shard;
      d.offset = shard * 6;
      d.values.assign(6, 0.5f * static_cast<float>(version + shard));
      ASSERT_TRUE(w->AddDense(d).ok());
    }
    VersionInfo info;
    TableSchema emb;
    emb.set_name("emb");
    emb.set_dim(8);
    emb.set_optimizer("adagrad");
    emb.set_state_floats_per_value(8);
    TableSchema dense;
    dense.set_name("w");
    dense.set_dense(true);
    dense.add_shape(12);
    dense.set_optimizer("sgd");
    info.tables = {emb, dense};
    info.metrics["auc"] = 0.75 + 0.01 * static_cast<double>(version);
    info.attributes["model"] = "lr";
    StreamPosition p;
    p.set_worker(0);
    p.set_rows_consumed(1000 * version);
    info.positions.push_back(p);
    info.created_unix_ms = 1700000000000 + static_cast<int64_t>(version) * 60000;
    Status s = w->Commit(info);
    ASSERT_TRUE(s.ok()) << s;
  }

  std::vector<uint64_t> Versions(const std::string& root) {
    auto v = ListVersions(root);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::vector<uint64_t>{};
  }

  fs::path dir_;
  std::string root_;
};

TEST_F(ModelsCliTest, ListShowsATableAndJsonThatParses) {
  Write(1, 0);
  Write(2, 1, 100, 50, {0, 1});
  ASSERT_TRUE(PinVersion(root_, 1).ok());
  const std::string table = Ok({"list"});
  for (const char* words :
       {"VERSION", "CREATED (UTC)", "2023-11-14 22:14:20", "full", "delta", "train f32",
        "emb=200 w=12", "emb=+50/-2", "auc=0.7600", "yes", "1 worker, 1000 rows"}) {
    EXPECT_NE(table.find(words), std::string::npos) << words << " missing in\n" << table;
  }

  const std::string json = Ok({"list", "--json"});
  google::protobuf::Value parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  ASSERT_EQ(parsed.list_value().values_size(), 2) << json;
  const auto& v1 = parsed.list_value().values(0).struct_value().fields();
  const auto& v2 = parsed.list_value().values(1).struct_value().fields();
  EXPECT_EQ(v1.at("version").number_value(), 1);
  EXPECT_EQ(v1.at("kind").string_value(), "full");
  EXPECT_TRUE(v1.at("pinned").bool_value());
  EXPECT_FALSE(v2.at("pinned").bool_value());
  EXPECT_EQ(v2.at("parent").number_value(), 1);
  EXPECT_NEAR(v1.at("metrics").struct_value().fields().at("auc").number_value(), 0.76, 1e-12);
  const auto& emb = v2.at("tables").struct_value().fields().at("emb").struct_value().fields();
  EXPECT_EQ(emb.at("rows").number_value(), 50);
  EXPECT_EQ(emb.at("tombstones").number_value(), 2);
  EXPECT_GT(v1.at("bytes").number_value(), 200 * (8 + 32 + 32));
  EXPECT_EQ(v1.at("attributes").struct_value().fields().at("model").string_value(), "lr");
}

TEST_F(ModelsCliTest, ShowAndVerifyTheChain) {
  Write(1, 0);
  Write(2, 1, 100, 50);
  const std::string show = Ok({"show", "--version=2"});
  for (const char* words : {"delta of 1", "1 -> 2", "training checkpoint", "emb.s00001.eddy",
                            "adagrad", "auc = 0.77", "model = lr"}) {
    EXPECT_NE(show.find(words), std::string::npos) << words << " missing in\n" << show;
  }
  const std::string json = Ok({"show", "--version=2", "--json"});
  google::protobuf::Value parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  EXPECT_EQ(parsed.struct_value().fields().at("parent_version").string_value(), "1");

  EXPECT_NE(Ok({"verify", "--version=2", "--materialize"}).find("every checksum matches"),
            std::string::npos);
  // One flipped byte in the full version fails the chain of 2, naming the file.
  const std::string victim = root_ + "/" + VersionDirName(1) + "/emb.s00000.eddy";
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  Fails({"verify", "--version=2"}, 1, "emb.s00000.eddy is corrupt: CRC32C mismatch");
}

TEST_F(ModelsCliTest, PinThenPruneKeepsThePinnedVersion) {
  Write(1, 0);
  Write(2, 1, 0, 20);
  Write(3, 0);
  Write(4, 0);
  EXPECT_NE(Ok({"pin", "--version=2"}).find("pinned now: 2"), std::string::npos);
  const std::string out = Ok({"prune", "--keep_full=1"});
  EXPECT_NE(out.find("removed: 3"), std::string::npos) << out;
  EXPECT_EQ(Versions(root_), (std::vector<uint64_t>{1, 2, 4}));  // 2 needs 1
  EXPECT_TRUE(Materialize(root_, 2).ok());
  Ok({"unpin", "--version=2"});
  Fails({"unpin", "--version=2"}, 1, "not pinned");
  Ok({"prune", "--keep_full=1"});
  EXPECT_EQ(Versions(root_), std::vector<uint64_t>{4});
}

TEST_F(ModelsCliTest, DeleteIsRefusedForPinnedVersionsAndParentsOfKeptDeltas) {
  Write(1, 0);
  Write(2, 1, 0, 20);
  Write(3, 0);
  Ok({"pin", "--version=3"});
  Fails({"delete", "--version=3"}, 1, "version 3 is pinned; unpin it");
  Fails({"delete", "--version=1"}, 1, "needed by the chain of version(s) 2");
  EXPECT_EQ(Versions(root_), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_NE(Ok({"delete", "--version=2"}).find("deleted version 2"), std::string::npos);
  Ok({"delete", "--version=1"});
  EXPECT_EQ(Versions(root_), std::vector<uint64_t>{3});
}

TEST_F(ModelsCliTest, ExportsMaterializeToTheOriginalWithinTheQuantizationError) {
  Write(1, 0);
  Write(2, 1, 150, 100, {2, 3, 4});
  auto want = Materialize(root_, 2);
  ASSERT_TRUE(want.ok()) << want.status();
  struct Case {
    std::string encoding;
    double rel;  // bound on |x - x'| relative to the row's max |x|
  };
  for (const Case& c : {Case{"fp16", std::ldexp(1.0, -11)}, Case{"int8", 1.0 / 254 * 1.001}}) {
    const std::string dst = (dir_ / ("serve_" + c.encoding)).string();
    const std::string out =
        Ok({"export", "--version=2", "--to=" + dst, "--encoding=" + c.encoding});
    EXPECT_NE(out.find("as a serving full version (" + c.encoding + ")"), std::string::npos) << out;
    auto got = Materialize(dst, 2);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->manifest.serving());
    EXPECT_EQ(got->manifest.metrics().at("auc"), want->manifest.metrics().at("auc"));
    EXPECT_EQ(got->manifest.positions(0).rows_consumed(), 2000u);
    const SparseRows& a = want->sparse.at("emb");
    const SparseRows& b = got->sparse.at("emb");
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(a.size(), 200u + 100 - 50 - 3);
    for (uint64_t key : a.keys()) {
      auto x = a.Find(key), y = b.Find(key);
      ASSERT_EQ(x.size(), y.size()) << key;
      double max_abs = 0;
      for (float v : x) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_NEAR(x[i], y[i], max_abs * c.rel + 1e-7) << c.encoding << " key " << key;
      }
    }
    EXPECT_EQ(got->dense.at("w").values, want->dense.at("w").values);
    // The export is a root of its own: the CLI lists it as a serving version.
    const std::string list = Models({"list", "--model_dir=" + dst}).output;
    EXPECT_NE(list.find("serve " + std::string(c.encoding == "fp16" ? "fp16" : "int8")),
              std::string::npos)
        << list;
  }
  // A serving delta on top of the exported full version.
  Write(3, 2, 0, 10);
  const std::string dst = (dir_ / "serve_fp16").string();
  Ok({"export", "--version=3", "--to=" + dst, "--encoding=fp16", "--delta"});
  auto d = VersionReader::Open(dst + "/" + VersionDirName(3));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->manifest().kind(), Manifest::KIND_DELTA);
  EXPECT_EQ(Materialize(dst, 3)->sparse.at("emb").size(),
            Materialize(root_, 3)->sparse.at("emb").size());
}

TEST_F(ModelsCliTest, BadFlagsAndUnknownVersionsAreExplained) {
  Write(1, 0);
  Write(2, 1, 0, 20);
  Fails({"show", "--version=7"}, 1, "version 7 is not committed");
  Fails({"show", "--version=7"}, 1, "versions there: 1, 2");
  Fails({"delete", "--version=9"}, 1, "versions there: 1, 2");
  Fails({"show"}, 2, "show needs --version=N; versions under");
  Fails({"export", "--version=2", "--to=" + (dir_ / "x").string(), "--encoding=bf16"}, 2,
        "--encoding=bf16 is not one of float32, fp16, int8");
  Fails({"export", "--version=2"}, 2, "export needs --to=DIR");
  Fails({"export", "--version=1", "--to=" + (dir_ / "x").string(), "--delta"}, 1,
        "is a full version");
  Fails({"prune"}, 2, "prune needs --keep_full=K");
  Fails({"frobnicate"}, 2, "unknown command 'frobnicate'");
  Fails({"list", "--bogus=1"}, 1, "unknown command line flag 'bogus'");

  CliRun r = Models({"list", "--model_dir=" + (dir_ / "absent").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("does not exist; check --model_dir"), std::string::npos) << r.output;
  r = Models({"list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("needs --model_dir=DIR"), std::string::npos) << r.output;
  r = Models({});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("no command given"), std::string::npos) << r.output;
  r = Models({"snapshot"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("snapshot needs --scheduler"), std::string::npos) << r.output;
  // Nobody listens there: a clear timeout, not a hang.
  r = Models({"snapshot", "--scheduler=tcp://127.0.0.1:9", "--timeout_ms=200"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("is the job running"), std::string::npos) << r.output;
  r = Models({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* words :
       {"list", "show", "verify", "pin", "unpin", "delete", "export", "prune", "snapshot",
        "--scheduler", "--model_dir", "--version", "--encoding", "--keep_full"}) {
    EXPECT_NE(r.output.find(words), std::string::npos) << words;
  }
}

}  // namespace
}  // namespace eddy::model_store
