// ServingModel: one model version as a serving replica holds it — compact
// sparse tables (serving/serving_rows.h), dense tensors and the manifest, no
// optimizer state — and the applier that reads a version's files into it (a
// full version rebuilds it, a delta changes it in place).
// ModelCopy: a ServingModel with a count of the LoadedModel views reading it,
// so that the replica's loader can wait until none is left before changing it.
// Thread-safety: ServingModel is a thread-compatible value; ViewCounter is
// thread-safe.
#ifndef EDDY_SERVING_SERVING_MODEL_H_
#define EDDY_SERVING_SERVING_MODEL_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/proto/model.pb.h"
#include "common/status.h"
#include "model_store/materialize.h"
#include "model_store/version_reader.h"
#include "serving/serving_rows.h"

namespace eddy::serving {

struct ServingModel {
  proto::Manifest manifest;  // of the last applied version (version 0: empty)
  std::map<std::string, ServingRows> sparse;
  std::map<std::string, std::vector<float>> dense;  // product(shape) floats, row-major

  uint64_t version() const { return manifest.version(); }
  // Bytes held by the tables (the manifest is not counted).
  uint64_t memory_bytes() const;
  // Keys and values of the sparse tables + dense values, in bytes: what
  // serving needs at the least.
  uint64_t payload_bytes() const;
};

// Applies one version to `model`: a full version replaces it, a delta
// (parent == model->version()) erases its tombstones, upserts its rows and
// overwrites its dense slices, in place. Optimizer state in the files is
// dropped. The version's schema is checked against the model first (parent,
// dims, shapes: FailedPrecondition / DataLoss, `model` untouched); an error
// while reading a file leaves `model` partially updated.
Status ApplyServingVersion(const model_store::VersionReader& reader, ServingModel* model,
                           const model_store::ReadOptions& options = {});

// The serving tables of a materialized model (optimizer state dropped).
ServingModel ServingModelFromMaterialized(const model_store::MaterializedModel& model);

// Counts live readers (LoadedModel views) of a model a writer wants to change.
class ViewCounter {
 public:
  void Add() EXCLUDES(mu_);
  void Release() EXCLUDES(mu_);
  int count() const EXCLUDES(mu_);
  // Waits until no view is left or `timeout` passes; returns whether none is left.
  bool WaitNone(std::chrono::milliseconds timeout) const EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  mutable CondVar released_;
  int views_ GUARDED_BY(mu_) = 0;
};

// One of the replica's two copies of its newest model (left-right). Owned by
// the replica's loader and, through aliasing shared_ptrs, by the views of it.
struct ModelCopy {
  ServingModel model;
  ViewCounter views;
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_SERVING_MODEL_H_
