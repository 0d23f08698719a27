#include "server/embedding_table.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/partition.h"
#include "common/table_config.h"
#include "tests/testing/table_spec.h"

namespace eddy::server {
namespace {

using testing::TableSpec;

std::unique_ptr<EmbeddingTable> MakeTable(const std::string& spec, uint32_t shards) {
  auto table = EmbeddingTable::Create(TableSpec(spec), shards);
  EXPECT_TRUE(table.ok()) << table.status();
  return std::move(table).value();
}

// Distinct random keys, with 0 and UINT64_MAX first.
std::vector<uint64_t> DistinctKeys(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::set<uint64_t> seen = {0, UINT64_MAX};
  std::vector<uint64_t> keys = {0, UINT64_MAX};
  while (keys.size() < n) {
    uint64_t k = rng();
    if (seen.insert(k).second) keys.push_back(k);
  }
  return keys;
}

// A value per (key, element) that is exact in float.
float ValueOf(uint64_t key, size_t d) {
  return static_cast<float>(MixKey(key) >> 44) + static_cast<float>(d);
}

TEST(EmbeddingTableTest, CreateRejectsBadConfigs) {
  EXPECT_EQ(EmbeddingTable::Create(TableSpec("w:shape=4x4"), 4).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingTable::Create(TableSpec("e:dim=4"), 0).status().code(),
            StatusCode::kInvalidArgument);
  proto::TableConfig l1 = TableSpec("e:dim=4,opt=adagrad");
  l1.mutable_optimizer()->set_l1(0.1f);
  EXPECT_EQ(EmbeddingTable::Create(l1, 4).status().code(), StatusCode::kInvalidArgument);
  proto::TableConfig no_dim = TableSpec("e:dim=4");
  no_dim.set_dim(0);
  EXPECT_EQ(EmbeddingTable::Create(no_dim, 4).status().code(), StatusCode::kInvalidArgument);
  auto ok = MakeTable("e:dim=5,opt=adam", 3);
  EXPECT_EQ(ok->dim(), 5u);
  EXPECT_EQ(ok->num_shards(), 3u);
  EXPECT_EQ(ok->config().name(), "e");
  EXPECT_EQ(ok->size(), 0u);
}

// Every key keeps its own row: pushes of distinct values (SGD, lr 1, from zeros)
// read back exactly. Run with one shard (the index rehashes ~15 times while the
// rows are being pushed, in requests of various sizes), a few, and many; with and
// without a pool (a pool splits the large requests into tasks).
class ExactKeysTest : public ::testing::TestWithParam<std::tuple<uint32_t, int>> {};

TEST_P(ExactKeysTest, EveryKeyKeepsItsOwnValues) {
  const auto [shards, threads] = GetParam();
  const size_t n = 200'000, dim = 3;
  auto table = MakeTable("e:dim=3,opt=sgd,lr=1,init=zeros", shards);
  ThreadPool pool(threads);
  ThreadPool* p = threads > 1 ? &pool : nullptr;
  const std::vector<uint64_t> keys = DistinctKeys(n, shards);
  std::vector<float> grads(n * dim);
  for (size_t i = 0; i < n; ++i) {
    for (size_t d = 0; d < dim; ++d) grads[i * dim + d] = -ValueOf(keys[i], d);
  }
  // Requests of growing sizes: 1, 2, 4, ... keys, then 20,000 at a time.
  size_t done = 0;
  for (size_t batch = 1; done < n; batch = std::min<size_t>(batch * 2, 20'000)) {
    const size_t count = std::min(batch, n - done);
    table->Push({keys.data() + done, count}, grads.data() + done * dim, p);
    done += count;
    ASSERT_EQ(table->size(), done);
  }
  // Read back in another order and request sizes.
  std::vector<uint64_t> shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(99));
  std::vector<float> out(n * dim);
  for (size_t b = 0; b < n; b += 7'000) {
    const size_t count = std::min<size_t>(7'000, n - b);
    table->Pull({shuffled.data() + b, count}, out.data() + b * dim, p);
  }
  for (size_t i = 0; i < n; ++i) {
    for (size_t d = 0; d < dim; ++d)
      ASSERT_EQ(out[i * dim + d], ValueOf(shuffled[i], d)) << "key " << shuffled[i];
  }
  EXPECT_EQ(table->size(), n);  // pulls of existing keys create nothing
  // ForEachRow visits every row once, with its values.
  size_t visited = 0;
  table->ForEachRow([&](uint64_t key, const float* w) {
    ++visited;
    for (size_t d = 0; d < dim; ++d) ASSERT_EQ(w[d], ValueOf(key, d));
  });
  EXPECT_EQ(visited, n);
}

INSTANTIATE_TEST_SUITE_P(ShardsAndThreads, ExactKeysTest,
                         ::testing::Combine(::testing::Values(1u, 7u, 64u),
                                            ::testing::Values(1, 2)));

TEST(EmbeddingTableTest, PullCreatesRowsWithTheInitializer) {
  const proto::TableConfig config =
      TableSpec("e:dim=16,opt=adagrad,init=normal,init_scale=0.1,seed=9");
  auto table = std::move(EmbeddingTable::Create(config, 8)).value();
  Initializer init(config.initializer());
  ThreadPool pool(2);
  const std::vector<uint64_t> keys = DistinctKeys(5000, 1);
  std::vector<float> out(keys.size() * 16), again(keys.size() * 16);
  table->Pull(keys, out.data(), &pool);
  EXPECT_EQ(table->size(), keys.size());
  std::vector<float> expected(16);
  for (size_t i = 0; i < keys.size(); ++i) {
    init.FillRow(keys[i], expected.data(), 16);
    for (size_t d = 0; d < 16; ++d) ASSERT_EQ(out[i * 16 + d], expected[d]);
  }
  // Same values the second time, and from a table with another shard count.
  table->Pull(keys, again.data(), nullptr);
  EXPECT_EQ(out, again);
  auto other = std::move(EmbeddingTable::Create(config, 3)).value();
  std::vector<uint64_t> reversed(keys.rbegin(), keys.rend());
  other->Pull(reversed, again.data(), nullptr);
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t d = 0; d < 16; ++d)
      ASSERT_EQ(again[(keys.size() - 1 - i) * 16 + d], out[i * 16 + d]);
  }
}

// A reference model of a table: rows kept in a map, updated with the Optimizer
// and Initializer directly.
class ReferenceTable {
 public:
  explicit ReferenceTable(const proto::TableConfig& config)
      : dim_(config.dim()),
        opt_(std::move(Optimizer::Create(config.optimizer())).value()),
        init_(config.initializer()) {}

  std::vector<float>& Row(uint64_t key) {
    auto [it, inserted] = rows_.try_emplace(key);
    if (inserted) {
      it->second.resize(dim_ + opt_->StateSize(dim_));
      init_.FillRow(key, it->second.data(), dim_);
      opt_->InitState(it->second.data(), it->second.data() + dim_, dim_);
    }
    return it->second;
  }
  void Push(const std::vector<uint64_t>& keys, const std::vector<float>& grads) {
    for (size_t i = 0; i < keys.size(); ++i) {
      auto& row = Row(keys[i]);
      opt_->Apply(row.data(), row.data() + dim_, grads.data() + i * dim_, dim_);
    }
  }
  size_t size() const { return rows_.size(); }

 private:
  size_t dim_;
  std::unique_ptr<Optimizer> opt_;
  Initializer init_;
  std::unordered_map<uint64_t, std::vector<float>> rows_;
};

class OptimizerKindTest : public ::testing::TestWithParam<const char*> {};

TEST_P(OptimizerKindTest, PushAppliesTheOptimizerLikeTheReference) {
  const std::string kind = GetParam();
  std::string spec = "e:dim=7,opt=" + kind + ",lr=0.05,init=uniform,init_scale=0.1,seed=4";
  if (kind == "ftrl") spec += ",l1=0.01,l2=0.1";
  const proto::TableConfig config = TableSpec(spec);
  auto table = std::move(EmbeddingTable::Create(config, 16)).value();
  ReferenceTable ref(config);
  ThreadPool pool(2);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::vector<uint64_t> vocab = DistinctKeys(3000, 6);
  for (int round = 0; round < 20; ++round) {
    // Random requests with repeated keys across and within requests.
    std::vector<uint64_t> keys(round % 2 ? 5000 : 300);
    for (auto& k : keys) k = vocab[rng() % vocab.size()];
    std::vector<float> grads(keys.size() * 7);
    for (float& g : grads) g = normal(rng);
    table->Push(keys, grads.data(), &pool);
    ref.Push(keys, grads);
  }
  ASSERT_EQ(table->size(), ref.size());
  std::vector<float> out(vocab.size() * 7);
  table->Pull(vocab, out.data(), &pool);
  for (size_t i = 0; i < vocab.size(); ++i) {
    const auto& row = ref.Row(vocab[i]);
    for (size_t d = 0; d < 7; ++d) ASSERT_EQ(out[i * 7 + d], row[d]) << kind << " key " << vocab[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimizerKindTest,
                         ::testing::Values("sgd", "adagrad", "adam", "ftrl"));

TEST(EmbeddingTableTest, DuplicateKeysInOnePushAreAppliedInOrder) {
  ThreadPool two_threads(2);
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &two_threads}) {
    const proto::TableConfig config =
        TableSpec("e:dim=2,opt=adagrad,lr=0.5,init=normal,init_scale=1");
    auto table = std::move(EmbeddingTable::Create(config, 4)).value();
    ReferenceTable ref(config);
    // Large enough (with a pool) to be split into tasks.
    std::vector<uint64_t> keys;
    std::vector<float> grads;
    for (int i = 0; i < 6000; ++i) {
      keys.push_back(i % 3 == 0 ? 5 : static_cast<uint64_t>(i % 97));
      grads.push_back(static_cast<float>(i % 11) - 5.0f);
      grads.push_back(static_cast<float>(i % 7) * 0.25f);
    }
    table->Push(keys, grads.data(), pool);
    ref.Push(keys, grads);
    std::vector<uint64_t> all = {5};
    for (uint64_t k = 0; k < 97; ++k) all.push_back(k);
    std::vector<float> out(all.size() * 2);
    table->Pull(all, out.data(), pool);
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(out[i * 2], ref.Row(all[i])[0]);
      EXPECT_EQ(out[i * 2 + 1], ref.Row(all[i])[1]);
    }
  }
}

TEST(EmbeddingTableTest, DuplicatesSumExactlyWithSgd) {
  auto table = MakeTable("e:dim=4,opt=sgd,lr=1,init=zeros", 4);
  const std::vector<uint64_t> keys = {7, 7, 0, 7, UINT64_MAX, 0};
  const std::vector<float> grads(keys.size() * 4, -1.0f);
  table->Push(keys, grads.data(), nullptr);
  std::vector<float> out(3 * 4);
  table->Pull(std::vector<uint64_t>{7, 0, UINT64_MAX}, out.data(), nullptr);
  EXPECT_EQ(out, (std::vector<float>{3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1}));
  EXPECT_EQ(table->size(), 3u);
}

TEST(EmbeddingTableTest, PushPullEqualsPushThenPull) {
  const std::string spec = "e:dim=5,opt=adam,lr=0.01,init=normal,init_scale=0.1";
  ThreadPool pool(2);
  for (size_t n : {10, 9000}) {
    auto a = MakeTable(spec, 8), b = MakeTable(spec, 8);
    std::mt19937_64 rng(n);
    for (int round = 0; round < 3; ++round) {
      std::vector<uint64_t> keys(n);
      for (auto& k : keys) k = rng() % (n / 2 + 1);  // many duplicates
      std::vector<float> grads(n * 5);
      for (float& g : grads) g = static_cast<float>(rng() % 1000) / 500.0f - 1.0f;
      std::vector<float> out_a(n * 5), out_b(n * 5);
      a->PushPull(keys, grads.data(), out_a.data(), &pool);
      b->Push(keys, grads.data(), &pool);
      b->Pull(keys, out_b.data(), &pool);
      ASSERT_EQ(out_a, out_b) << "n " << n << " round " << round;
    }
    std::map<uint64_t, std::vector<float>> rows_a, rows_b;
    a->ForEachRow([&](uint64_t k, const float* w) { rows_a[k].assign(w, w + 5); });
    b->ForEachRow([&](uint64_t k, const float* w) { rows_b[k].assign(w, w + 5); });
    EXPECT_EQ(rows_a, rows_b);
  }
}

TEST(EmbeddingTableTest, EmptyRequestsDoNothing) {
  auto table = MakeTable("e:dim=4", 4);
  table->Pull({}, nullptr, nullptr);
  table->Push({}, nullptr, nullptr);
  table->PushPull({}, nullptr, nullptr, nullptr);
  EXPECT_EQ(table->size(), 0u);
}

// Four threads push -1 to the same keys (SGD, lr 1): every update is applied
// exactly once, whatever the interleaving. Two use a shared pool, two run on
// their own thread; a fifth thread pulls meanwhile and sees whole numbers only.
TEST(EmbeddingTableTest, ConcurrentPushesAreAllApplied) {
  auto table = MakeTable("e:dim=4,opt=sgd,lr=1,init=zeros", 16);
  ThreadPool pool(2);
  const std::vector<uint64_t> keys = DistinctKeys(5000, 3);
  constexpr int kRounds = 40, kPushers = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kPushers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<float> grads(keys.size() * 4, -1.0f);
      for (int r = 0; r < kRounds; ++r) {
        // Alternate large (split into tasks) and small requests over a rotating
        // part of the keys, so that pushes overlap in different ways.
        const size_t count = r % 2 ? keys.size() : 1 + rng() % 500;
        const size_t start = r % 2 ? 0 : rng() % (keys.size() - count + 1);
        std::vector<uint64_t> part(keys.begin() + start, keys.begin() + start + count);
        table->Push(part, grads.data(), t % 2 ? &pool : nullptr);
        if (r % 2 == 0) {
          // Push the rest too, so that every key gets exactly one -1 per round.
          std::vector<uint64_t> rest(keys.begin(), keys.begin() + start);
          rest.insert(rest.end(), keys.begin() + start + count, keys.end());
          table->Push(rest, grads.data(), t % 2 ? &pool : nullptr);
        }
      }
    });
  }
  std::thread reader([&] {
    std::vector<float> out(keys.size() * 4);
    for (int r = 0; r < 20; ++r) {
      table->Pull(keys, out.data(), nullptr);
      for (float v : out) {
        ASSERT_EQ(v, std::floor(v));
        ASSERT_GE(v, 0.0f);
        ASSERT_LE(v, float{kRounds * kPushers});
      }
    }
  });
  for (auto& t : threads) t.join();
  reader.join();
  std::vector<float> out(keys.size() * 4);
  table->Pull(keys, out.data(), &pool);
  for (float v : out) ASSERT_EQ(v, float{kRounds * kPushers});
  EXPECT_EQ(table->size(), keys.size());
}

// Small requests lock only the shards they touch; many of them from several
// threads at once still apply every update exactly once.
TEST(EmbeddingTableTest, ConcurrentSmallRequestsAreAllApplied) {
  auto table = MakeTable("e:dim=2,opt=sgd,lr=1,init=zeros", 64);
  const std::vector<uint64_t> keys = DistinctKeys(40, 8);
  constexpr int kThreads = 4, kRounds = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<float> grads(2 * 5, -1.0f);
      std::vector<float> out(2 * 5);
      for (int r = 0; r < kRounds; ++r) {
        // Every key once per round, in requests of 1 to 5 keys.
        for (size_t b = 0; b < keys.size();) {
          const size_t count = std::min<size_t>(1 + (r + t + b) % 5, keys.size() - b);
          if (r % 3 == 0) {
            table->PushPull({keys.data() + b, count}, grads.data(), out.data(), nullptr);
          } else {
            table->Push({keys.data() + b, count}, grads.data(), nullptr);
          }
          b += count;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<float> out(keys.size() * 2);
  table->Pull(keys, out.data(), nullptr);
  for (float v : out) ASSERT_EQ(v, float{kThreads * kRounds});
}

TEST(EmbeddingTableTest, MemoryIsCloseToThePayload) {
  // dim 16 AdaGrad: 128 bytes of weights and state per row.
  auto table = MakeTable("e:dim=16,opt=adagrad", 64);
  EXPECT_EQ(table->RowBytes(), 128u);
  const size_t empty = table->MemoryBytes();
  EXPECT_LT(empty, size_t{256} << 10) << "an empty table should be small";
  ThreadPool pool(2);
  const size_t n = 300'000;
  std::vector<uint64_t> keys(10'000);
  std::vector<float> out(keys.size() * 16);
  for (size_t b = 0; b < n; b += keys.size()) {
    for (size_t i = 0; i < keys.size(); ++i) keys[i] = MixKey(b + i);
    table->Pull(keys, out.data(), &pool);
  }
  ASSERT_EQ(table->size(), n);
  const double per_row = double(table->MemoryBytes()) / double(table->size());
  std::printf("[   INFO   ] %zu rows, dim 16 adagrad, 64 shards: %.1f bytes/row (payload 128)\n", n,
              per_row);
  RecordProperty("bytes_per_row", std::to_string(per_row));
  EXPECT_GT(per_row, 128.0);
  EXPECT_LT(per_row, 1.5 * 128);
}

}  // namespace
}  // namespace eddy::server

namespace eddy::server {
namespace {

TEST(EmbeddingTableAdmissionTest, AnIdGetsARowOnItsNthPushAndReadsAsZerosUntilThen) {
  for (uint32_t shards : {1u, 8u}) {
    auto table = MakeTable("e:dim=2,opt=sgd,lr=1,init=normal,init_scale=0.5,admit_after=3", shards);
    ThreadPool pool(2);
    const std::vector<uint64_t> keys = DistinctKeys(3000, 5);  // enough for the pool path
    std::vector<float> out(keys.size() * 2, 7.0f), grads(keys.size() * 2, 1.0f);
    table->Pull(keys, out.data(), &pool);
    EXPECT_EQ(table->size(), 0u);
    for (float x : out) ASSERT_EQ(x, 0.0f);
    table->Push(keys, grads.data(), &pool);
    table->PushPull(keys, grads.data(), out.data(), &pool);  // second sighting
    EXPECT_EQ(table->size(), 0u);
    for (float x : out) ASSERT_EQ(x, 0.0f);
    EXPECT_EQ(table->admission_stats().waiting(), keys.size());
    // The third push admits every key: a fresh row, then this push's gradient.
    table->Push(keys, grads.data(), &pool);
    EXPECT_EQ(table->size(), keys.size());
    table->Pull(keys, out.data(), &pool);
    const auto plain = MakeTable("e:dim=2,opt=sgd,lr=1,init=normal,init_scale=0.5", 1);
    std::vector<float> expected(keys.size() * 2);
    plain->Push(keys, grads.data(), nullptr);
    plain->Pull(keys, expected.data(), nullptr);
    EXPECT_EQ(out, expected);
    const AdmissionStats stats = table->admission_stats();
    EXPECT_EQ(stats.admitted, keys.size());
    EXPECT_EQ(stats.pending_pushes, 2 * keys.size());
    EXPECT_EQ(stats.waiting(), 0u);
    // The sketches are part of the table's memory.
    EXPECT_GT(table->MemoryBytes(), plain->MemoryBytes() + shards * 4 * kAdmissionSketchWidth);
  }
}

TEST(EmbeddingTableAdmissionTest, WithoutAdmissionNothingChanges) {
  auto table = MakeTable("e:dim=2,opt=sgd,lr=1", 4);
  const std::vector<uint64_t> keys = {1, 2, 3};
  std::vector<float> out(6);
  table->Pull(keys, out.data(), nullptr);
  EXPECT_EQ(table->size(), 3u);
  EXPECT_EQ(table->admission_stats().admitted, 0u);
}

}  // namespace
}  // namespace eddy::server
