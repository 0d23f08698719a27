#include "worker/data/row.h"

#include <glog/logging.h>

#include <algorithm>

namespace eddy::worker {

void Example::Clear() {
  label = 0;
  ids.clear();
  fields.clear();
  values.clear();
  dense.clear();
}

void ExampleBatch::Append(const Example& example) {
  DCHECK_EQ(example.dense.size(), dense_dim);
  DCHECK_EQ(example.ids.size(), example.fields.size());
  DCHECK_EQ(example.ids.size(), example.values.size());
  labels.push_back(example.label);
  ids.insert(ids.end(), example.ids.begin(), example.ids.end());
  fields.insert(fields.end(), example.fields.begin(), example.fields.end());
  values.insert(values.end(), example.values.begin(), example.values.end());
  dense.insert(dense.end(), example.dense.begin(), example.dense.end());
  offsets.push_back(static_cast<uint32_t>(ids.size()));
}

void ExampleBatch::Clear() {
  labels.clear();
  offsets.assign(1, 0);
  ids.clear();
  fields.clear();
  values.clear();
  dense.clear();
  origins.clear();
}

void ExampleBatch::Truncate(size_t rows) {
  if (rows >= size()) return;
  labels.resize(rows);
  offsets.resize(rows + 1);
  ids.resize(offsets.back());
  fields.resize(offsets.back());
  values.resize(offsets.back());
  dense.resize(rows * dense_dim);
  if (origins.size() > rows) origins.resize(rows);
}

void ExampleBatch::DropFront(size_t rows) {
  if (rows == 0) return;
  if (rows >= size()) {
    Clear();
    return;
  }
  const uint32_t first = offsets[rows];
  labels.erase(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(rows));
  offsets.erase(offsets.begin(), offsets.begin() + static_cast<std::ptrdiff_t>(rows));
  for (uint32_t& o : offsets) o -= first;
  ids.erase(ids.begin(), ids.begin() + first);
  fields.erase(fields.begin(), fields.begin() + first);
  values.erase(values.begin(), values.begin() + first);
  dense.erase(dense.begin(), dense.begin() + static_cast<std::ptrdiff_t>(rows * dense_dim));
  if (!origins.empty()) {
    origins.erase(origins.begin(),
                  origins.begin() + static_cast<std::ptrdiff_t>(std::min(rows, origins.size())));
  }
}

}  // namespace eddy::worker
