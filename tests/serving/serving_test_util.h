// Helpers of the serving tests: temporary directories and model versions with
// the attributes a replica needs.
#ifndef EDDY_TESTS_SERVING_SERVING_TEST_UTIL_H_
#define EDDY_TESTS_SERVING_SERVING_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "model_store/version_reader.h"
#include "model_store/version_writer.h"
#include "models/ctr_model.h"
#include "tests/testing/temp_dir.h"

namespace eddy::testing {

namespace fs = std::filesystem;

// A model description as manifest attributes (libffm rows).
struct TestModel {
  std::string model = "lr";
  int num_fields = 3;
  int emb_dim = 4;
  std::string hidden = "8,8";

  models::ModelOptions Options() const {
    models::ModelOptions o;
    o.kind = *models::ParseModelKind(model);
    o.num_fields = num_fields;
    o.emb_dim = o.kind == models::ModelKind::kLr ? 0 : emb_dim;
    o.dense_dim = 0;
    o.hidden.clear();
    std::stringstream in(hidden);
    std::string part;
    while (std::getline(in, part, ',')) o.hidden.push_back(std::stoi(part));
    return o;
  }
  uint32_t row_dim() const { return 1 + static_cast<uint32_t>(Options().emb_dim); }
  std::map<std::string, std::string> Attributes() const {
    return {{"model", model},       {"emb_dim", std::to_string(Options().emb_dim)},
            {"hidden", hidden},     {"num_fields", std::to_string(num_fields)},
            {"dense_dim", "0"},     {"format", "libffm"},
            {"sparse_table", "emb"}};
  }
};

// Contents of one version: sparse rows (key -> row_dim floats), tombstones,
// dense tensors (name -> values).
struct VersionContent {
  std::map<uint64_t, std::vector<float>> rows;
  std::vector<uint64_t> tombstones;
  std::map<std::string, std::vector<float>> dense;
};

// Writes and commits `version` (a delta of `parent`, or full if parent == 0).
inline void WriteVersion(const std::string& root, const TestModel& m, uint64_t version,
                         uint64_t parent, const VersionContent& c) {
  auto w = model_store::VersionWriter::Begin(root, version, parent, /*serving=*/true,
                                             proto::Manifest::ENCODING_FLOAT32, {.sync = false});
  ASSERT_TRUE(w.ok()) << w.status();
  model_store::SparseShard s;
  s.table = "emb";
  s.dim = m.row_dim();
  for (const auto& [k, v] : c.rows) {
    s.keys.push_back(k);
    s.values.insert(s.values.end(), v.begin(), v.end());
  }
  s.tombstones = c.tombstones;
  ASSERT_TRUE(w->AddSparse(s).ok());
  model_store::VersionInfo info;
  model_store::TableSchema t;
  t.set_name("emb");
  t.set_dim(m.row_dim());
  info.tables.push_back(t);
  auto ctr = models::CtrModel::Create(m.Options());
  ASSERT_TRUE(ctr.ok()) << ctr.status();
  for (const auto& p : (*ctr)->dense_params()) {
    model_store::TableSchema d;
    d.set_name(p.name);
    d.set_dense(true);
    for (int64_t x : p.shape) d.add_shape(static_cast<uint64_t>(x));
    info.tables.push_back(d);
    auto it = c.dense.find(p.name);
    if (it == c.dense.end()) continue;  // unchanged in a delta
    model_store::DenseSlice slice;
    slice.table = p.name;
    slice.values = it->second;
    ASSERT_TRUE(w->AddDense(slice).ok());
  }
  info.attributes = m.Attributes();
  Status st = w->Commit(info);
  ASSERT_TRUE(st.ok()) << st;
}

// Every value (sparse and dense) equal to `value`, for `keys`.
inline VersionContent UniformContent(const TestModel& m, const std::vector<uint64_t>& keys,
                                     float value) {
  VersionContent c;
  for (uint64_t k : keys) c.rows[k] = std::vector<float>(m.row_dim(), value);
  auto ctr = models::CtrModel::Create(m.Options());
  for (const auto& p : (*ctr)->dense_params()) {
    c.dense[p.name] = std::vector<float>(static_cast<size_t>(p.size()), value);
  }
  return c;
}

// Flips one byte in the middle of the first data file of the version in `dir`.
inline void CorruptFirstDataFile(const std::string& dir) {
  auto reader = model_store::VersionReader::Open(dir);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const std::string path = dir + "/" + reader->manifest().files(0).path();
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = fs::file_size(path);
  f.seekg(static_cast<std::streamoff>(size / 2));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(size / 2));
  f.write(&c, 1);
}

}  // namespace eddy::testing

#endif  // EDDY_TESTS_SERVING_SERVING_TEST_UTIL_H_
