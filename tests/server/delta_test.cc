// Epoch stamps, delta exports and row eviction of EmbeddingTable: what model
// versions (full + deltas with tombstones) are built from.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/partition.h"
#include "common/thread_pool.h"
#include "server/embedding_table.h"
#include "server/initializer.h"
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
  keys.resize(n);
  return keys;
}

std::vector<float> RandomGrads(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0, 0.1f);
  std::vector<float> g(n);
  for (float& x : g) x = d(rng);
  return g;
}

// A row as exported: weights followed by optimizer state.
using Rows = std::map<uint64_t, std::vector<float>>;

struct Delta {
  Rows rows;
  std::vector<uint64_t> tombstones;
};

Rows ToRows(const EmbeddingTable& t, const std::vector<uint64_t>& keys,
            const std::vector<float>& weights, const std::vector<float>& state) {
  const size_t dim = t.dim(), sf = t.state_floats();
  EXPECT_EQ(weights.size(), keys.size() * dim);
  EXPECT_EQ(state.size(), keys.size() * sf);
  Rows rows;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<float> row(weights.begin() + i * dim, weights.begin() + (i + 1) * dim);
    row.insert(row.end(), state.begin() + i * sf, state.begin() + (i + 1) * sf);
    EXPECT_TRUE(rows.emplace(keys[i], std::move(row)).second) << "key exported twice";
  }
  return rows;
}

Rows ExportAll(const EmbeddingTable& t) {
  std::vector<uint64_t> keys;
  std::vector<float> weights, state;
  t.Export(&keys, &weights, &state);
  return ToRows(t, keys, weights, state);
}

Delta ExportDelta(const EmbeddingTable& t, uint32_t since) {
  std::vector<uint64_t> keys, tombstones;
  std::vector<float> weights, state;
  t.ExportSince(since, &keys, &weights, &state, &tombstones);
  Delta d{ToRows(t, keys, weights, state), std::move(tombstones)};
  // Each tombstone once, and never also a row.
  std::set<uint64_t> unique(d.tombstones.begin(), d.tombstones.end());
  EXPECT_EQ(unique.size(), d.tombstones.size());
  for (uint64_t k : d.tombstones) EXPECT_EQ(d.rows.count(k), 0u) << k;
  return d;
}

std::set<uint64_t> KeysOf(const Rows& rows) {
  std::set<uint64_t> keys;
  for (const auto& [k, row] : rows) keys.insert(k);
  return keys;
}

// Applies a delta as a model version reader does: tombstones first, then rows.
void ApplyDelta(const Delta& d, Rows* state) {
  for (uint64_t k : d.tombstones) state->erase(k);
  for (const auto& [k, row] : d.rows) (*state)[k] = row;
}

TEST(DeltaTest, EpochStartsAtOneAndAdvances) {
  auto t = MakeTable("e:dim=2,opt=sgd", 4);
  EXPECT_EQ(t->epoch(), 1u);
  EXPECT_EQ(t->AdvanceEpoch(), 2u);
  EXPECT_EQ(t->AdvanceEpoch(), 3u);
  EXPECT_EQ(t->epoch(), 3u);
  EXPECT_EQ(t->RowBytes(), 2 * sizeof(float));  // the stamp is not part of the row
  EXPECT_EQ(t->state_floats(), 0u);
}

// Rows created or modified after AdvanceEpoch, and only those, are in
// ExportSince(new epoch), with the same weights and state as in Export().
TEST(DeltaTest, ExportSinceHasTheRowsCreatedOrModifiedSinceTheEpoch) {
  auto t = MakeTable("e:dim=4,opt=adam,lr=0.01,init=normal,init_scale=0.1", 8);
  ThreadPool pool(2);
  std::mt19937_64 rng(1);
  const std::vector<uint64_t> keys = DistinctKeys(12'000, 1);
  const std::vector<uint64_t> old_keys(keys.begin(), keys.begin() + 8000);
  std::vector<float> out(keys.size() * 4);
  t->Pull(old_keys, out.data(), &pool);
  t->Push(old_keys, RandomGrads(old_keys.size() * 4, rng).data(), &pool);
  EXPECT_EQ(KeysOf(ExportDelta(*t, 1).rows).size(), 8000u);

  const uint32_t e2 = t->AdvanceEpoch();
  EXPECT_TRUE(ExportDelta(*t, e2).rows.empty());
  std::set<uint64_t> expected;
  // Pushed (large request, split into tasks) and pushed (small request).
  const std::vector<uint64_t> pushed(keys.begin(), keys.begin() + 5000);
  t->Push(pushed, RandomGrads(pushed.size() * 4, rng).data(), &pool);
  expected.insert(pushed.begin(), pushed.end());
  const std::vector<uint64_t> few = {keys[6000], keys[6001]};
  t->Push(few, RandomGrads(8, rng).data(), nullptr);
  expected.insert(few.begin(), few.end());
  // Pulled, existing: not modified.
  t->Pull({keys.data() + 5000, 3000}, out.data(), &pool);
  // Pulled, new: created.
  t->Pull({keys.data() + 8000, 1000}, out.data(), &pool);
  expected.insert(keys.begin() + 8000, keys.begin() + 9000);

  const Rows all = ExportAll(*t);
  Delta d = ExportDelta(*t, e2);
  EXPECT_TRUE(d.tombstones.empty());
  EXPECT_EQ(KeysOf(d.rows), expected);
  for (const auto& [k, row] : d.rows) ASSERT_EQ(row, all.at(k)) << k;
  // 0 and 1 mean everything.
  EXPECT_EQ(ExportDelta(*t, 0).rows, all);
  EXPECT_EQ(ExportDelta(*t, 1).rows, all);

  // PushPull and Import stamp too (Import: existing and new rows).
  const uint32_t e3 = t->AdvanceEpoch();
  const std::vector<uint64_t> pp = {keys[7000], keys[7001], keys[7002]};
  t->PushPull(pp, RandomGrads(12, rng).data(), out.data(), nullptr);
  const std::vector<uint64_t> imported = {keys[100], keys[11'000]};
  ASSERT_TRUE(t->Import(imported, std::vector<float>(8, 0.5f), {}).ok());
  d = ExportDelta(*t, e3);
  EXPECT_EQ(KeysOf(d.rows),
            (std::set<uint64_t>{keys[7000], keys[7001], keys[7002], keys[100], keys[11'000]}));
  EXPECT_EQ(d.rows.at(keys[100]), ExportAll(*t).at(keys[100]));
  // Appends to the vectors, like Export.
  std::vector<uint64_t> k = {42}, tomb = {43};
  std::vector<float> w = {1, 2, 3, 4}, s(t->state_floats(), 5.0f);
  t->ExportSince(e3, &k, &w, &s, &tomb);
  EXPECT_EQ(k.size(), 6u);
  EXPECT_EQ(k[0], 42u);
  EXPECT_EQ(w.size(), 6u * 4);
  EXPECT_EQ(tomb, std::vector<uint64_t>{43});
}

TEST(DeltaTest, EvictStaleRemovesRowsAndLeavesTombstones) {
  const proto::TableConfig config =
      TableSpec("e:dim=3,opt=adagrad,lr=0.1,init=normal,init_scale=0.1,seed=3");
  auto t = std::move(EmbeddingTable::Create(config, 8)).value();
  std::mt19937_64 rng(2);
  const std::vector<uint64_t> keys = DistinctKeys(2000, 2);
  const std::vector<uint64_t> stale(keys.begin(), keys.begin() + 1200);
  const std::vector<uint64_t> fresh(keys.begin() + 1200, keys.end());
  t->Push(keys, RandomGrads(keys.size() * 3, rng).data(), nullptr);
  const uint32_t e2 = t->AdvanceEpoch();
  t->Push(fresh, RandomGrads(fresh.size() * 3, rng).data(), nullptr);
  const Rows before = ExportAll(*t);

  EXPECT_EQ(t->EvictStale(1), 0u);  // nothing is older than epoch 1
  EXPECT_EQ(t->EvictStale(e2), stale.size());
  EXPECT_EQ(t->EvictStale(e2), 0u);
  EXPECT_EQ(t->size(), fresh.size());
  EXPECT_EQ(t->num_tombstones(), stale.size());
  // Gone from Export and ForEachRow; the other rows are unchanged.
  const Rows after = ExportAll(*t);
  EXPECT_EQ(KeysOf(after), std::set<uint64_t>(fresh.begin(), fresh.end()));
  for (const auto& [k, row] : after) ASSERT_EQ(row, before.at(k));
  size_t visited = 0;
  t->ForEachRow([&](uint64_t key, const float* w) {
    ++visited;
    ASSERT_EQ(after.count(key), 1u);
    ASSERT_EQ(std::vector<float>(w, w + 3),
              std::vector<float>(after.at(key).begin(), after.at(key).begin() + 3));
  });
  EXPECT_EQ(visited, fresh.size());
  // The delta since e2: the fresh rows, and the evicted keys as tombstones.
  Delta d = ExportDelta(*t, e2);
  EXPECT_EQ(KeysOf(d.rows), std::set<uint64_t>(fresh.begin(), fresh.end()));
  EXPECT_EQ(std::set<uint64_t>(d.tombstones.begin(), d.tombstones.end()),
            std::set<uint64_t>(stale.begin(), stale.end()));
  const uint32_t e3 = t->AdvanceEpoch();
  EXPECT_TRUE(ExportDelta(*t, e3).tombstones.empty());
  EXPECT_EQ(ExportDelta(*t, 0).tombstones.size(), stale.size());

  // A pull re-creates an evicted key as a new row (initializer, fresh state);
  // it is then a row of the delta, not a tombstone.
  std::vector<float> w(3);
  t->Pull(std::vector<uint64_t>{stale[0]}, w.data(), nullptr);
  std::vector<float> expected(3);
  Initializer(config.initializer()).FillRow(stale[0], expected.data(), 3);
  EXPECT_EQ(w, expected);
  auto fresh_table = std::move(EmbeddingTable::Create(config, 8)).value();
  fresh_table->Pull(std::vector<uint64_t>{stale[0]}, w.data(), nullptr);
  EXPECT_EQ(ExportAll(*t).at(stale[0]), ExportAll(*fresh_table).at(stale[0]));
  EXPECT_EQ(t->size(), fresh.size() + 1);
  d = ExportDelta(*t, e2);
  EXPECT_EQ(d.rows.count(stale[0]), 1u);
  EXPECT_EQ(d.tombstones.size(), stale.size() - 1);
  d = ExportDelta(*t, e3);
  EXPECT_EQ(KeysOf(d.rows), std::set<uint64_t>{stale[0]});

  // Tombstones are forgotten by epoch.
  t->DropTombstonesBefore(e2);
  EXPECT_EQ(t->num_tombstones(), stale.size());
  t->DropTombstonesBefore(e3);
  EXPECT_EQ(t->num_tombstones(), 0u);
  EXPECT_TRUE(ExportDelta(*t, 0).tombstones.empty());
}

// Many rounds of pushes (new and existing keys), evictions and lookups against
// a reference map: after deletions from the index every present key is found
// with its own values and every absent key is absent. One shard (one large index
// with long probe runs that wrap around), a few, and many.
class EvictionIndexTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(EvictionIndexTest, MatchesAReferenceMapAcrossRounds) {
  const uint32_t shards = GetParam();
  auto t = MakeTable("e:dim=2,opt=sgd,lr=1,init=zeros", shards);
  ThreadPool pool(2);
  std::mt19937_64 rng(shards);
  const std::vector<uint64_t> universe = DistinctKeys(200'000, 100 + shards);
  struct Ref {
    float count = 0;
    uint32_t epoch = 0;
  };
  std::unordered_map<uint64_t, Ref> ref;
  // Key k's row is {pushes, pushes * (1 + k % 997)} since it was (re)created.
  auto grads_for = [](const std::vector<uint64_t>& keys) {
    std::vector<float> g(keys.size() * 2);
    for (size_t i = 0; i < keys.size(); ++i) {
      g[2 * i] = -1;
      g[2 * i + 1] = -static_cast<float>(1 + keys[i] % 997);
    }
    return g;
  };
  for (int round = 0; round < 12; ++round) {
    const uint32_t epoch = round == 0 ? t->epoch() : t->AdvanceEpoch();
    // Push a random third of the universe (in requests of random sizes, some
    // split into tasks), so that rows get different ages.
    std::vector<uint64_t> pushed;
    for (uint64_t k : universe) {
      if (rng() % 3 == 0) pushed.push_back(k);
    }
    std::shuffle(pushed.begin(), pushed.end(), rng);
    for (size_t b = 0; b < pushed.size();) {
      const size_t count = std::min<size_t>(1 + rng() % 20'000, pushed.size() - b);
      const std::vector<uint64_t> part(pushed.begin() + b, pushed.begin() + b + count);
      t->Push(part, grads_for(part).data(), rng() % 2 ? &pool : nullptr);
      b += count;
    }
    for (uint64_t k : pushed) {
      Ref& r = ref[k];
      r.count += 1;
      r.epoch = epoch;
    }
    // Evict what was not pushed in the last two rounds.
    if (epoch > 2) {
      const uint32_t older_than = epoch - 1;
      size_t expected_evictions = 0;
      for (auto it = ref.begin(); it != ref.end();) {
        if (it->second.epoch < older_than) {
          ++expected_evictions;
          it = ref.erase(it);
        } else {
          ++it;
        }
      }
      ASSERT_EQ(t->EvictStale(older_than), expected_evictions) << "round " << round;
      t->DropTombstonesBefore(older_than);
    }
    ASSERT_EQ(t->size(), ref.size()) << "round " << round;
    // Every present key: pull (finds it, creates nothing) and check values.
    std::vector<uint64_t> present;
    for (const auto& [k, r] : ref) present.push_back(k);
    std::vector<float> out(present.size() * 2);
    t->Pull(present, out.data(), &pool);
    for (size_t i = 0; i < present.size(); ++i) {
      const Ref& r = ref[present[i]];
      ASSERT_EQ(out[2 * i], r.count) << "key " << present[i] << " round " << round;
      ASSERT_EQ(out[2 * i + 1], r.count * static_cast<float>(1 + present[i] % 997));
    }
    ASSERT_EQ(t->size(), ref.size()) << "a pull of a present key created a row";
    // Every absent key is absent: exactly the reference's keys are exported.
    size_t visited = 0;
    t->ForEachRow([&](uint64_t key, const float*) {
      ++visited;
      ASSERT_EQ(ref.count(key), 1u) << "evicted key " << key << " still present";
    });
    ASSERT_EQ(visited, ref.size());
  }
  // Absent keys pulled now are created with the initializer (zeros).
  std::vector<uint64_t> absent;
  for (uint64_t k : universe) {
    if (!ref.count(k) && absent.size() < 5000) absent.push_back(k);
  }
  std::vector<float> out(absent.size() * 2, 1.0f);
  t->Pull(absent, out.data(), &pool);
  for (float v : out) ASSERT_EQ(v, 0.0f);
  EXPECT_EQ(t->size(), ref.size() + absent.size());
}

INSTANTIATE_TEST_SUITE_P(Shards, EvictionIndexTest, ::testing::Values(1u, 7u, 64u));

// A small index sees probe runs that wrap around its end after nearly every
// eviction: thousands of rounds of evict + insert + lookup on one shard.
TEST(DeltaTest, SmallIndexStaysExactUnderChurn) {
  auto t = MakeTable("e:dim=1,opt=sgd,lr=1,init=zeros", 1);
  std::mt19937_64 rng(5);
  std::unordered_map<uint64_t, std::pair<float, uint32_t>> ref;  // key -> value, epoch
  const std::vector<uint64_t> universe = DistinctKeys(64, 6);
  for (int round = 0; round < 3000; ++round) {
    const uint32_t epoch = t->AdvanceEpoch();
    std::vector<uint64_t> keys(1 + rng() % 8);
    for (uint64_t& k : keys) k = universe[rng() % universe.size()];
    const std::vector<float> grads(keys.size(), -1.0f);
    t->Push(keys, grads.data(), nullptr);
    for (uint64_t k : keys) {
      auto& r = ref[k];
      r.first += 1;
      r.second = epoch;
    }
    const uint32_t older_than = epoch > 6 ? epoch - static_cast<uint32_t>(rng() % 6) : 1;
    size_t expected = 0;
    for (auto it = ref.begin(); it != ref.end();) {
      if (it->second.second < older_than) {
        ++expected;
        it = ref.erase(it);
      } else {
        ++it;
      }
    }
    ASSERT_EQ(t->EvictStale(older_than), expected);
    t->DropTombstonesBefore(epoch);
    ASSERT_EQ(t->size(), ref.size());
    std::map<uint64_t, float> rows;
    t->ForEachRow([&](uint64_t key, const float* w) { rows[key] = w[0]; });
    ASSERT_EQ(rows.size(), ref.size()) << "round " << round;
    for (const auto& [k, r] : ref) {
      ASSERT_EQ(rows.count(k), 1u) << "round " << round;
      ASSERT_EQ(rows[k], r.first) << "round " << round;
    }
  }
}

// Evicted rows' memory is reused: rounds of evicting half the rows and inserting
// as many do not grow the table.
TEST(DeltaTest, EvictedRowsAreReused) {
  auto t = MakeTable("e:dim=16,opt=adagrad", 16);
  ThreadPool pool(2);
  const size_t n = 100'000;
  const std::vector<uint64_t> keys = DistinctKeys(5 * n, 9);  // n + 8 rounds of n / 2
  std::vector<float> out(n * 16);
  // Rows [0, n) pulled, then half of them evicted and re-created, every round:
  // the same keys, so the same shards: the size does not change at all.
  std::vector<uint64_t> first(keys.begin(), keys.begin() + n);
  t->Pull(first, out.data(), &pool);
  const size_t full = t->MemoryBytes();
  for (int round = 0; round < 5; ++round) {
    const uint32_t e = t->AdvanceEpoch();
    t->Push({first.data(), n / 2}, std::vector<float>(n / 2 * 16, 0.1f).data(), &pool);
    ASSERT_EQ(t->EvictStale(e), n / 2);
    t->DropTombstonesBefore(t->epoch() + 1);
    EXPECT_LT(t->MemoryBytes(), full + 1);
    t->Pull(first, out.data(), &pool);  // re-creates the evicted half
    ASSERT_EQ(t->size(), n);
    EXPECT_EQ(t->MemoryBytes(), full) << "round " << round;
  }
  // New keys instead of the evicted ones: they fall into other shards than the
  // freed rows, so a shard may need a little more, but not a round's worth.
  std::vector<uint64_t> live = first;
  size_t next = n;
  for (int round = 0; round < 8; ++round) {
    const uint32_t e = t->AdvanceEpoch();
    t->Push({live.data(), n / 2}, std::vector<float>(n / 2 * 16, 0.1f).data(), &pool);
    ASSERT_EQ(t->EvictStale(e), n / 2);
    t->DropTombstonesBefore(t->epoch() + 1);
    live.resize(n / 2);
    std::vector<uint64_t> added;
    for (size_t i = 0; i < n / 2; ++i) added.push_back(keys[next++]);
    t->Pull(added, out.data(), &pool);
    live.insert(live.begin(), added.begin(), added.end());  // the oldest go last
    ASSERT_EQ(t->size(), n);
  }
  const double growth = double(t->MemoryBytes()) / double(full);
  std::printf("[   INFO   ] memory after 8 rounds of evicting and adding %zu rows: x%.3f\n", n / 2,
              growth);
  EXPECT_LT(growth, 1.10);  // without reuse: x1.38 per round
}

// A chain of versions: a full export, then per round pushes, pulls of new keys,
// imports and evictions, each round's ExportSince applied to a copy (tombstones
// erase, rows upsert): the copy equals Export() after every round.
TEST(DeltaTest, DeltaChainReproducesTheTable) {
  const proto::TableConfig config =
      TableSpec("e:dim=4,opt=adam,lr=0.01,init=normal,init_scale=0.1,seed=11");
  auto t = std::move(EmbeddingTable::Create(config, 16)).value();
  ThreadPool pool(2);
  std::mt19937_64 rng(12);
  const std::vector<uint64_t> universe = DistinctKeys(30'000, 13);
  std::vector<float> out(universe.size() * 4);
  t->Pull({universe.data(), 10'000}, out.data(), &pool);

  uint32_t since = t->AdvanceEpoch();
  Rows copy = ExportAll(*t);  // the full version S0
  for (int round = 0; round < 15; ++round) {
    std::vector<uint64_t> keys(5000);
    for (uint64_t& k : keys) k = universe[rng() % (10'000 + round * 1000)];
    t->Push(keys, RandomGrads(keys.size() * 4, rng).data(), round % 2 ? &pool : nullptr);
    std::vector<uint64_t> pulled(300);
    for (uint64_t& k : pulled) k = universe[rng() % universe.size()];
    t->Pull(pulled, out.data(), nullptr);
    if (round % 4 == 1) {
      const std::vector<uint64_t> imported = {universe[rng() % universe.size()],
                                              universe[rng() % universe.size()]};
      ASSERT_TRUE(t->Import(imported, std::vector<float>(8, 0.25f), {}).ok());
    }
    if (round >= 2) t->EvictStale(t->epoch() - 1 - static_cast<uint32_t>(rng() % 2));
    const uint32_t next = t->AdvanceEpoch();
    ApplyDelta(ExportDelta(*t, since), &copy);
    if (round % 5 == 4) t->DropTombstonesBefore(since);  // not needed from now on
    since = next;
    ASSERT_EQ(copy, ExportAll(*t)) << "round " << round;
  }
  // The copy, imported into a new table, is the table.
  auto rebuilt = std::move(EmbeddingTable::Create(config, 3)).value();
  std::vector<uint64_t> keys;
  std::vector<float> weights, state;
  for (const auto& [k, row] : copy) {
    keys.push_back(k);
    weights.insert(weights.end(), row.begin(), row.begin() + 4);
    state.insert(state.end(), row.begin() + 4, row.end());
  }
  ASSERT_TRUE(rebuilt->Import(keys, weights, state).ok());
  EXPECT_EQ(ExportAll(*rebuilt), ExportAll(*t));
}

// Pushes from several threads while another thread advances the epoch, exports
// deltas and evicts. Every push that started after an AdvanceEpoch returned is in
// ExportSince of that epoch; afterwards the table is consistent.
TEST(DeltaTest, ConcurrentPushesAdvanceExportAndEvict) {
  auto t = MakeTable("e:dim=4,opt=sgd,lr=1,init=zeros", 16);
  ThreadPool pool(2);
  const std::vector<uint64_t> universe = DistinctKeys(20'000, 21);
  constexpr int kPushers = 3, kPushesPerThread = 300, kRounds = 40;
  std::atomic<uint32_t> generation{t->epoch()};
  std::atomic<int> pushers_done{0};
  struct Done {
    uint32_t generation;
    std::vector<uint64_t> keys;
  };
  std::mutex log_mu;
  std::vector<Done> log;  // completed pushes; guarded by log_mu

  std::vector<std::thread> threads;
  for (int p = 0; p < kPushers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937_64 rng(p);
      for (int i = 0; i < kPushesPerThread; ++i) {
        const uint32_t g = generation.load(std::memory_order_acquire);
        std::vector<uint64_t> keys(i % 10 == 0 ? 6000 : 1 + rng() % 300);
        for (uint64_t& k : keys) k = universe[rng() % universe.size()];
        const std::vector<float> grads(keys.size() * 4, -1.0f);
        if (i % 3 == 0) {
          std::vector<float> out(keys.size() * 4);
          t->PushPull(keys, grads.data(), out.data(), p == 0 ? &pool : nullptr);
        } else {
          t->Push(keys, grads.data(), p == 0 ? &pool : nullptr);
        }
        std::lock_guard lock(log_mu);
        log.push_back(Done{g, std::move(keys)});
      }
      pushers_done.fetch_add(1);
    });
  }
  auto check_since = [&](uint32_t e) {
    // Pushes completed (logged) before the export that started after epoch e.
    std::set<uint64_t> must;
    {
      std::lock_guard lock(log_mu);
      for (const Done& d : log) {
        if (d.generation >= e) must.insert(d.keys.begin(), d.keys.end());
      }
    }
    const Delta d = ExportDelta(*t, e);
    for (uint64_t k : must) ASSERT_EQ(d.rows.count(k), 1u) << "key " << k << " since " << e;
  };
  std::thread control([&] {
    for (int r = 0; r < kRounds || pushers_done.load() < kPushers; ++r) {
      const uint32_t e = t->AdvanceEpoch();
      generation.store(e, std::memory_order_release);
      // Rows stamped >= e - 1 stay, so everything pushed since e stays too.
      t->EvictStale(e - 1);
      check_since(e);
      t->DropTombstonesBefore(e - 2);
      if (r >= kRounds) std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  control.join();
  // Quiet now: every push since the last epoch is in its delta, and the views
  // of the table agree.
  check_since(t->epoch());
  const Rows all = ExportAll(*t);
  EXPECT_EQ(all.size(), t->size());
  EXPECT_EQ(ExportDelta(*t, 0).rows, all);
  size_t visited = 0;
  t->ForEachRow([&](uint64_t, const float*) { ++visited; });
  EXPECT_EQ(visited, all.size());
  for (const auto& [k, row] : all) {
    for (float v : row) ASSERT_EQ(v, std::floor(v));  // whole pushes only
  }
}

}  // namespace
}  // namespace eddy::server
