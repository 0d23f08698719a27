// LoadedModel: a view of one model version ready to answer predictions
// (compact tables, the CtrModel configuration from the manifest attributes, the
// row parser), and Predictor, which turns text rows into probabilities with it.
// Thread-safety: a LoadedModel and the tables it reads do not change while it
// lives and may be shared by any number of threads; a Predictor is used by one
// thread at a time.
#ifndef EDDY_SERVING_LOADED_MODEL_H_
#define EDDY_SERVING_LOADED_MODEL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model_store/materialize.h"
#include "serving/serving_model.h"
#include "models/ctr_model.h"
#include "worker/data/parser.h"
#include "worker/data/row.h"
#include "worker/data/slots.h"

namespace eddy::serving {

// What a manifest says about the model that uses its tables.
struct ServingModelSpec {
  models::ModelOptions options;
  std::string format = "criteo";  // criteo | libsvm | libffm
  // Slot of a feature: its field (criteo, libffm) or its position in the row (libsvm).
  worker::SlotMode slots = worker::SlotMode::kByField;
  worker::ParserOptions parser;  // criteo_integers from the attribute "int_features"
  std::string sparse_table = "emb";
};

// Reads attributes "model" (required), "emb_dim", "hidden", "num_fields",
// "dense_dim", "format", "int_features", "sparse_table" (docs/protocol.md, "Serving").
// Defaults as eddy_train's flags. Errors: InvalidArgument naming the attribute.
StatusOr<ServingModelSpec> ModelSpecFromManifest(const proto::Manifest& manifest);

// A view of one model version ready to answer predictions: the compact tables
// (a ServingModel it co-owns), the CtrModel configuration from the manifest
// attributes, the row parser. The replica's newest version is a view of one of
// its two model copies, which the loader changes only once the view is gone
// (`views` counts it); other versions are views of an immutable model.
class LoadedModel {
 public:
  // Checks the tables against the model the manifest describes (sparse table
  // dim = 1 + emb_dim, every dense parameter present with its size).
  // `views`, if set, counts this view while it lives (the writer of `model`
  // waits for it). Errors: InvalidArgument / FailedPrecondition naming what
  // does not fit.
  static StatusOr<std::shared_ptr<const LoadedModel>> Create(
      std::shared_ptr<const ServingModel> model, std::shared_ptr<ViewCounter> views = nullptr);
  // The serving tables of a materialized model (optimizer state dropped).
  static StatusOr<std::shared_ptr<const LoadedModel>> Create(
      const model_store::MaterializedModel& model);

  ~LoadedModel();
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  uint64_t version() const { return model_->version(); }
  const proto::Manifest& manifest() const { return model_->manifest; }
  const ServingModel& model() const { return *model_; }
  const ServingModelSpec& spec() const { return spec_; }
  const worker::Parser& parser() const { return *parser_; }
  // The sparse table "emb": per id [first-order weight, embedding...].
  const ServingRows& sparse() const { return *sparse_; }
  // Dense parameters in CtrModel::dense_params() order.
  std::span<const std::span<const float>> dense_params() const { return dense_params_; }
  uint64_t rows() const { return sparse_->size(); }

 private:
  LoadedModel() = default;
  std::shared_ptr<const ServingModel> model_;
  std::shared_ptr<ViewCounter> views_;  // null: model_ is immutable
  ServingModelSpec spec_;
  std::unique_ptr<worker::Parser> parser_;
  const ServingRows* sparse_ = nullptr;               // into model_
  std::vector<std::span<const float>> dense_params_;  // into model_
};

// The model inputs of parsed rows, mapped to slots by the function training
// uses (worker/data/slots.h: AssignSlots); an id absent from the table reads as
// a zero row.
struct ModelInputs {
  int batch = 0;
  std::vector<float> emb;     // B*F*K
  std::vector<float> linear;  // B*F
  std::vector<float> mask;    // B*F
  std::vector<float> dense;   // B*D
};
Status BuildInputs(const LoadedModel& model, const worker::ExampleBatch& rows, ModelInputs* out);

// Parses text rows and runs the forward pass. Keeps one CtrModel (and its
// oneDNN primitives) per model configuration it has seen. Not thread-safe.
class Predictor {
 public:
  Predictor() = default;
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  // One probability per row. `no_label`: the rows lack the label column.
  // Errors: InvalidArgument for a malformed row (naming its index) or no rows.
  StatusOr<std::vector<float>> Predict(const LoadedModel& model,
                                       std::span<const std::string_view> rows, bool no_label);

 private:
  std::map<std::string, std::unique_ptr<models::CtrModel>> models_;  // by configuration
  worker::ExampleBatch batch_;
  worker::Example example_;
  ModelInputs inputs_;
  std::string line_;
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_LOADED_MODEL_H_
