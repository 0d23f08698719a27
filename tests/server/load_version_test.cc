// ParameterStore::LoadVersion against the reference it replaces
// (materialize the chain, then copy row by row: tests/testing/reference_restore.h):
// versions written from real stores' captures (full, deltas with evictions;
// float32 and float16; 2 servers loaded into 1, 2 and 3), a live store, a
// corrupt file, and training and deltas after the load.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/partition.h"
#include "common/table_config.h"
#include "model_store/version_dir.h"
#include "model_store/version_writer.h"
#include "server/parameter_store.h"
#include "tests/testing/reference_restore.h"
#include "tests/testing/temp_dir.h"

namespace eddy::server {
namespace {

using proto::Manifest;

constexpr char kTables[] =
    "emb:dim=4,opt=adam,lr=0.05,init=normal,init_scale=0.1,seed=5;"
    "mlp:shape=3x3000,opt=adam,lr=0.01,init=uniform,init_scale=0.1";

std::vector<proto::TableConfig> Tables() {
  auto t = ParseTableSpecs(kTables);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

std::unique_ptr<ParameterStore> MakeStore(uint32_t server, uint32_t servers, int threads = 2) {
  ParameterStoreOptions o;
  o.server_id = server;
  o.num_servers = servers;
  o.num_shards = 8;
  o.num_threads = threads;
  auto store = std::make_unique<ParameterStore>(o);
  for (const proto::TableConfig& t : Tables()) EXPECT_TRUE(store->AddTable(t).ok());
  return store;
}

// Sorted rows of a table (weights, then state) and a tensor's values and state.
struct Snapshot {
  std::map<uint64_t, std::vector<float>> rows;
  std::vector<float> dense_values, dense_state;
  bool operator==(const Snapshot&) const = default;
};

Snapshot Take(ParameterStore& store) {
  Snapshot s;
  EmbeddingTable& t = *store.sparse_table("emb");
  std::vector<uint64_t> keys;
  std::vector<float> w, st;
  t.Export(&keys, &w, &st);
  const size_t d = t.dim(), sf = t.state_floats();
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<float>& r = s.rows[keys[i]];
    r.assign(w.begin() + i * d, w.begin() + (i + 1) * d);
    r.insert(r.end(), st.begin() + i * sf, st.begin() + (i + 1) * sf);
  }
  store.dense_tensor("mlp")->ExportPerValue(&s.dense_values, &s.dense_state);
  return s;
}

// A job of `servers` stores trained with random pushes, whose captures are
// written as model versions (as servers and the scheduler do).
class Job {
 public:
  Job(uint32_t servers, std::string root) : root_(std::move(root)), rng_(servers) {
    for (uint32_t s = 0; s < servers; ++s) stores_.push_back(MakeStore(s, servers));
  }

  // Pushes random gradients to `n` keys drawn from [0, key_range) and to the tensor.
  void Train(size_t n, uint64_t key_range) {
    std::uniform_int_distribution<uint64_t> key(0, key_range - 1);
    std::normal_distribution<float> grad(0, 0.1f);
    const uint32_t servers = static_cast<uint32_t>(stores_.size());
    std::vector<std::vector<uint64_t>> keys(servers);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t k = key(rng_) * 7919 + 11;
      keys[ServerOfKey(k, servers)].push_back(k);
    }
    for (uint32_t s = 0; s < servers; ++s) {
      std::sort(keys[s].begin(), keys[s].end());
      keys[s].erase(std::unique(keys[s].begin(), keys[s].end()), keys[s].end());
      std::vector<float> g(keys[s].size() * 4);
      for (float& x : g) x = grad(rng_);
      stores_[s]->sparse_table("emb")->Push(keys[s], g.data(), nullptr);
      DenseTensor& d = *stores_[s]->dense_tensor("mlp");
      std::vector<float> dg(d.size());
      for (float& x : dg) x = grad(rng_);
      d.Push(dg.data(), nullptr);
    }
  }

  // Captures every store and commits version `v` (a delta of `parent`, or full
  // with 0); a delta evicts rows unchanged in the last `evict` captures.
  void Write(uint64_t v, uint64_t parent, Manifest::ValueEncoding encoding, uint32_t evict = 0) {
    model_store::WriterOptions wo;
    wo.sync = false;
    auto w = model_store::VersionWriter::Begin(root_, v, parent, false, encoding, wo);
    ASSERT_TRUE(w.ok()) << w.status();
    uint32_t epoch = 0;
    for (auto& store : stores_) {
      StoreCapture c = store->Capture(parent == 0 ? 0 : epochs_.at(parent), evict);
      epoch = c.epoch;
      for (const auto& s : c.sparse) ASSERT_TRUE(w->AddSparse(s).ok());
      for (const auto& d : c.dense) ASSERT_TRUE(w->AddDense(d).ok());
    }
    epochs_[v] = epoch;
    model_store::VersionInfo info;
    for (const proto::TableConfig& t : Tables()) {
      model_store::TableSchema s;
      s.set_name(t.name());
      s.set_optimizer("adam");
      if (t.dense()) {
        s.set_dense(true);
        for (auto d : t.shape()) s.add_shape(d);
        s.set_state_floats_per_value(stores_[0]->dense_tensor(t.name())->state_floats_per_value());
      } else {
        s.set_dim(t.dim());
        s.set_state_floats_per_value(
            static_cast<uint32_t>(stores_[0]->sparse_table(t.name())->state_floats()));
      }
      info.tables.push_back(s);
    }
    Status s = w->Commit(info);
    ASSERT_TRUE(s.ok()) << s;
  }

 private:
  std::string root_;
  std::mt19937 rng_;
  std::vector<std::unique_ptr<ParameterStore>> stores_;
  std::map<uint64_t, uint32_t> epochs_;
};

class LoadVersionTest : public ::testing::Test {
 protected:
  std::string root() const { return dir_.path() + "/models"; }

  // Loads `v` into server `s` of `servers` both ways and expects the same.
  void ExpectLoadEqualsReference(uint64_t v, uint32_t s, uint32_t servers, bool own_files) {
    SCOPED_TRACE("version " + std::to_string(v) + ", server " + std::to_string(s) + " of " +
                 std::to_string(servers));
    auto fast = MakeStore(s, servers), ref = MakeStore(s, servers);
    auto loaded = fast->LoadVersion(root(), v);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(
        testing::MaterializeAndRestore(root(), v, Tables(), s, servers, own_files, ref.get()).ok());
    const Snapshot a = Take(*fast), b = Take(*ref);
    EXPECT_EQ(a.rows.size(), b.rows.size());
    EXPECT_GT(a.rows.size(), 0u);
    EXPECT_TRUE(a == b);
    EXPECT_EQ(loaded->rows, a.rows.size());
  }

  testing::TempDir dir_;
};

TEST_F(LoadVersionTest, FullVersionEqualsTheReference) {
  Job job(1, root());
  job.Train(5000, 3000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  ExpectLoadEqualsReference(1, 0, 1, true);
}

TEST_F(LoadVersionTest, FullPlusDeltasWithEvictionsEqualsTheReference) {
  Job job(2, root());
  job.Train(20000, 8000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  job.Train(3000, 20000);  // touches some rows, creates others
  job.Write(2, 1, Manifest::ENCODING_FLOAT32, /*evict=*/1);
  job.Train(3000, 20000);
  job.Write(3, 2, Manifest::ENCODING_FLOAT32, /*evict=*/1);
  auto reader = model_store::VersionReader::Open(root() + "/" + model_store::VersionDirName(3));
  ASSERT_TRUE(reader.ok());
  uint64_t tombstones = 0;
  for (const auto& f : reader->manifest().files()) tombstones += f.tombstones();
  EXPECT_GT(tombstones, 0u);
  for (uint32_t s = 0; s < 2; ++s) ExpectLoadEqualsReference(3, s, 2, true);
  auto store = MakeStore(0, 2);
  auto loaded = store->LoadVersion(root(), 3);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->chain, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_GT(loaded->tombstones, 0u);
}

TEST_F(LoadVersionTest, VersionOfTwoServersLoadedIntoOneAndThree) {
  Job job(2, root());
  job.Train(20000, 8000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  job.Train(3000, 20000);
  job.Write(2, 1, Manifest::ENCODING_FLOAT32, /*evict=*/1);
  ExpectLoadEqualsReference(2, 0, 1, false);
  for (uint32_t s = 0; s < 3; ++s) ExpectLoadEqualsReference(2, s, 3, false);
}

TEST_F(LoadVersionTest, Float16AndInt8ValuesEqualTheReference) {
  Job job(2, root());
  job.Train(10000, 5000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT16);
  job.Train(2000, 8000);
  job.Write(2, 1, Manifest::ENCODING_INT8_ROW_SCALE, /*evict=*/1);
  ExpectLoadEqualsReference(1, 1, 2, true);
  ExpectLoadEqualsReference(2, 0, 2, true);
  ExpectLoadEqualsReference(2, 0, 3, false);
}

TEST_F(LoadVersionTest, LiveStoreGetsExactlyTheVersionsRows) {
  Job job(1, root());
  job.Train(5000, 3000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  auto live = MakeStore(0, 1), ref = MakeStore(0, 1);
  // Rows and tombstones the version does not have, and dense values.
  std::vector<uint64_t> other;
  for (uint64_t k = 0; k < 2000; ++k) other.push_back(k * 104729 + 5);
  std::vector<float> g(other.size() * 4, 0.5f);
  live->sparse_table("emb")->Push(other, g.data(), nullptr);
  live->sparse_table("emb")->AdvanceEpoch();
  live->sparse_table("emb")->AdvanceEpoch();
  EXPECT_GT(live->sparse_table("emb")->EvictStale(3), 0u);
  live->sparse_table("emb")->Push(other, g.data(), nullptr);
  std::vector<float> dg(live->dense_tensor("mlp")->size(), 1.0f);
  live->dense_tensor("mlp")->Push(dg.data(), nullptr);
  const uint32_t epoch_before = live->sparse_table("emb")->epoch();

  auto loaded = live->LoadVersion(root(), 1);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(testing::MaterializeAndRestore(root(), 1, Tables(), 0, 1, true, ref.get()).ok());
  EXPECT_TRUE(Take(*live) == Take(*ref));
  EXPECT_EQ(live->sparse_table("emb")->num_tombstones(), 0u);
  EXPECT_GT(loaded->epoch, epoch_before);
  // Loading again (a second rollback) gives the same.
  ASSERT_TRUE(live->LoadVersion(root(), 1).ok());
  EXPECT_TRUE(Take(*live) == Take(*ref));
}

TEST_F(LoadVersionTest, CorruptShardFileIsDataLossNamingIt) {
  Job job(2, root());
  job.Train(20000, 8000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  auto reader = model_store::VersionReader::Open(root() + "/" + model_store::VersionDirName(1));
  ASSERT_TRUE(reader.ok());
  for (const auto& f : reader->manifest().files()) {
    if (f.table() != "emb" || f.shard() != 1) continue;
    const std::string path = reader->dir() + "/" + f.path();
    // One flipped byte in the values: only the checksum can tell.
    const uint64_t at = 64 + f.rows() * 8 + 4 * 7;
    {
      std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
      file.seekg(static_cast<std::streamoff>(at));
      const char c = static_cast<char>(file.get());
      file.seekp(static_cast<std::streamoff>(at));
      file.put(static_cast<char>(c ^ 0x10));
    }
    auto store = MakeStore(1, 2);
    auto loaded = store->LoadVersion(root(), 1);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss) << loaded.status();
    EXPECT_NE(loaded.status().message().find(path), std::string::npos) << loaded.status();
    // Server 0 does not read that file; without checksums the flip goes unseen.
    EXPECT_TRUE(MakeStore(0, 2)->LoadVersion(root(), 1).ok());
    EXPECT_TRUE(store->LoadVersion(root(), 1, LoadOptions{.verify_checksums = false}).ok());
    // Into 3 servers, every file is read: all fail.
    EXPECT_EQ(MakeStore(0, 3)->LoadVersion(root(), 1).status().code(), StatusCode::kDataLoss);
    return;
  }
  FAIL() << "no file of shard 1";
}

TEST_F(LoadVersionTest, MismatchedTablesAreRefusedBeforeAnythingChanges) {
  Job job(1, root());
  job.Train(2000, 1000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  ParameterStoreOptions o;
  auto store = std::make_unique<ParameterStore>(o);
  ASSERT_TRUE(store->AddTable(*ParseTableSpecs("emb:dim=8,opt=adam").value().begin()).ok());
  std::vector<float> out(8);
  store->sparse_table("emb")->Pull(std::vector<uint64_t>{1}, out.data(), nullptr);
  auto loaded = store->LoadVersion(root(), 1);
  EXPECT_EQ(loaded.status().code(), StatusCode::kFailedPrecondition) << loaded.status();
  EXPECT_NE(loaded.status().message().find("dim 4"), std::string::npos) << loaded.status();
  EXPECT_EQ(store->sparse_table("emb")->size(), 1u);
  EXPECT_EQ(store->LoadVersion(root(), 9).status().code(), StatusCode::kNotFound);
}

TEST_F(LoadVersionTest, TrainingAndDeltasAfterTheLoadBehaveAsAfterTheReference) {
  Job job(2, root());
  job.Train(20000, 8000);
  job.Write(1, 0, Manifest::ENCODING_FLOAT32);
  job.Train(3000, 20000);
  job.Write(2, 1, Manifest::ENCODING_FLOAT32, /*evict=*/1);
  auto fast = MakeStore(1, 2), ref = MakeStore(1, 2);
  auto loaded = fast->LoadVersion(root(), 2);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(testing::MaterializeAndRestore(root(), 2, Tables(), 1, 2, true, ref.get()).ok());
  // The same pushes (old and new keys) and pulls give the same values.
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 30000; k += 7) {
    const uint64_t key = k * 7919 + 11;
    if (ServerOfKey(key, 2) == 1) keys.push_back(key);
  }
  std::mt19937 rng(9);
  std::normal_distribution<float> grad(0, 0.1f);
  std::vector<float> g(keys.size() * 4);
  for (float& x : g) x = grad(rng);
  for (ParameterStore* s : {fast.get(), ref.get()}) {
    s->sparse_table("emb")->Push(keys, g.data(), nullptr);
    std::vector<float> dg(s->dense_tensor("mlp")->size(), 0.01f);
    s->dense_tensor("mlp")->Push(dg.data(), nullptr);
  }
  std::vector<float> pa(keys.size() * 4), pb(keys.size() * 4);
  fast->sparse_table("emb")->Pull(keys, pa.data(), nullptr);
  ref->sparse_table("emb")->Pull(keys, pb.data(), nullptr);
  EXPECT_EQ(pa, pb);
  EXPECT_TRUE(Take(*fast) == Take(*ref));
  // A delta relative to the loaded version holds exactly the pushed rows; a
  // full capture holds everything, as after the reference.
  StoreCapture delta = fast->Capture(loaded->epoch);
  std::vector<uint64_t> got = delta.sparse.at(0).keys, want = keys;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  EXPECT_TRUE(delta.sparse.at(0).tombstones.empty());
  StoreCapture full_fast = fast->Capture(0), full_ref = ref->Capture(0);
  EXPECT_EQ(full_fast.rows, full_ref.rows);
}

}  // namespace
}  // namespace eddy::server
