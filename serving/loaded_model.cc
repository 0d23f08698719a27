#include "serving/loaded_model.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace eddy::serving {
namespace {

const std::string* FindAttribute(const proto::Manifest& m, const std::string& key) {
  auto it = m.attributes().find(key);
  return it == m.attributes().end() ? nullptr : &it->second;
}

StatusOr<int> ParseInt(const std::string& key, const std::string& text, int lo, int hi) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi) {
    return InvalidArgumentError("manifest attribute " + key + "='" + text +
                                "': expected an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

std::string ConfigKey(const models::ModelOptions& o) {
  std::string key = std::string(models::ModelKindName(o.kind)) + "/" +
                    std::to_string(o.num_fields) + "/" + std::to_string(o.emb_dim) + "/" +
                    std::to_string(o.dense_dim);
  for (int h : o.hidden) key += "/" + std::to_string(h);
  return key;
}

}  // namespace

StatusOr<ServingModelSpec> ModelSpecFromManifest(const proto::Manifest& manifest) {
  ServingModelSpec spec;
  const std::string* model = FindAttribute(manifest, "model");
  if (model == nullptr) {
    return InvalidArgumentError("version " + std::to_string(manifest.version()) +
                                ": the manifest has no 'model' attribute (lr|fm|wdl|deepfm)");
  }
  ASSIGN_OR_RETURN(spec.options.kind, models::ParseModelKind(*model));
  if (const std::string* f = FindAttribute(manifest, "format")) spec.format = *f;
  if (spec.format != "criteo" && spec.format != "libsvm" && spec.format != "libffm") {
    return InvalidArgumentError("manifest attribute format='" + spec.format +
                                "': expected criteo, libsvm or libffm");
  }
  spec.slots = worker::SlotModeForFormat(spec.format);
  if (const std::string* t = FindAttribute(manifest, "sparse_table")) spec.sparse_table = *t;
  const bool criteo = spec.format == "criteo";
  if (const std::string* i = FindAttribute(manifest, "int_features")) {
    ASSIGN_OR_RETURN(spec.parser.criteo_integers, worker::ParseCriteoIntegers(*i));
  }
  spec.options.num_fields = criteo ? worker::CriteoFieldCount(spec.parser.criteo_integers) : 0;
  spec.options.dense_dim = criteo ? worker::CriteoDenseDim(spec.parser.criteo_integers) : 0;
  if (const std::string* f = FindAttribute(manifest, "num_fields")) {
    ASSIGN_OR_RETURN(spec.options.num_fields, ParseInt("num_fields", *f, 1, 1 << 16));
  }
  if (spec.options.num_fields <= 0) {
    return InvalidArgumentError("format " + spec.format + " needs the attribute num_fields");
  }
  if (const std::string* d = FindAttribute(manifest, "dense_dim")) {
    ASSIGN_OR_RETURN(spec.options.dense_dim, ParseInt("dense_dim", *d, 0, 1 << 16));
  }
  int emb_dim = 16;
  if (const std::string* k = FindAttribute(manifest, "emb_dim")) {
    ASSIGN_OR_RETURN(emb_dim, ParseInt("emb_dim", *k, 0, 1024));
  }
  spec.options.emb_dim = spec.options.kind == models::ModelKind::kLr ? 0 : emb_dim;
  spec.options.hidden.clear();
  std::string hidden = "400,400,400";
  if (const std::string* h = FindAttribute(manifest, "hidden")) hidden = *h;
  std::stringstream in(hidden);
  std::string part;
  while (std::getline(in, part, ',')) {
    ASSIGN_OR_RETURN(int size, ParseInt("hidden", part, 1, 1 << 16));
    spec.options.hidden.push_back(size);
  }
  return spec;
}

StatusOr<std::shared_ptr<const LoadedModel>> LoadedModel::Create(
    std::shared_ptr<const ServingModel> model, std::shared_ptr<ViewCounter> views) {
  std::shared_ptr<LoadedModel> m(new LoadedModel());
  m->model_ = std::move(model);
  if (views != nullptr) {
    views->Add();
    m->views_ = std::move(views);
  }
  const ServingModel& sm = *m->model_;
  const std::string where = "version " + std::to_string(sm.version());
  StatusOr<ServingModelSpec> spec = ModelSpecFromManifest(sm.manifest);
  if (!spec.ok()) return spec.status().WithContext(where);
  m->spec_ = std::move(spec).value();
  ASSIGN_OR_RETURN(m->parser_, worker::MakeParser(m->spec_.format, m->spec_.parser));
  if (m->parser_->dense_dim() != static_cast<uint32_t>(m->spec_.options.dense_dim)) {
    return InvalidArgumentError(where + ": format " + m->spec_.format + " gives " +
                                std::to_string(m->parser_->dense_dim()) +
                                " dense inputs per row but dense_dim is " +
                                std::to_string(m->spec_.options.dense_dim));
  }
  auto sparse = sm.sparse.find(m->spec_.sparse_table);
  if (sparse == sm.sparse.end()) {
    return FailedPreconditionError(where + ": no sparse table '" + m->spec_.sparse_table + "'");
  }
  const uint32_t want_dim = 1 + static_cast<uint32_t>(m->spec_.options.emb_dim);
  if (sparse->second.dim() != want_dim) {
    return FailedPreconditionError(where + ": sparse table '" + m->spec_.sparse_table +
                                   "' has dim " + std::to_string(sparse->second.dim()) +
                                   ", the model needs 1 + emb_dim = " + std::to_string(want_dim));
  }
  m->sparse_ = &sparse->second;
  // The dense parameter list and sizes come from the model itself.
  StatusOr<std::unique_ptr<models::CtrModel>> ctr = models::CtrModel::Create(m->spec_.options);
  if (!ctr.ok()) return ctr.status().WithContext(where);
  for (const models::DenseParamSpec& p : (*ctr)->dense_params()) {
    auto it = sm.dense.find(p.name);
    if (it == sm.dense.end()) {
      return FailedPreconditionError(where + ": dense tensor '" + p.name + "' is missing");
    }
    if (it->second.size() != static_cast<size_t>(p.size())) {
      return FailedPreconditionError(where + ": dense tensor '" + p.name + "' has " +
                                     std::to_string(it->second.size()) +
                                     " values, the model needs " + std::to_string(p.size()));
    }
    m->dense_params_.push_back(it->second);
  }
  return std::shared_ptr<const LoadedModel>(std::move(m));
}

StatusOr<std::shared_ptr<const LoadedModel>> LoadedModel::Create(
    const model_store::MaterializedModel& model) {
  return Create(std::make_shared<const ServingModel>(ServingModelFromMaterialized(model)));
}

LoadedModel::~LoadedModel() {
  dense_params_.clear();
  sparse_ = nullptr;
  if (views_ != nullptr) views_->Release();
}

Status BuildInputs(const LoadedModel& model, const worker::ExampleBatch& rows, ModelInputs* out) {
  const auto& o = model.spec().options;
  const size_t b = rows.size(), f = static_cast<size_t>(o.num_fields);
  const size_t k = static_cast<size_t>(o.emb_dim), d = static_cast<size_t>(o.dense_dim);
  if (rows.dense_dim != d) {
    return InvalidArgumentError("rows carry " + std::to_string(rows.dense_dim) +
                                " dense inputs, the model expects " + std::to_string(d));
  }
  out->batch = static_cast<int>(b);
  out->emb.assign(b * f * k, 0.0f);
  out->linear.assign(b * f, 0.0f);
  out->mask.assign(b * f, 0.0f);
  out->dense.assign(rows.dense.begin(), rows.dense.end());
  const ServingRows& table = model.sparse();
  std::vector<worker::SlottedFeature> features;
  for (size_t r = 0; r < b; ++r) {
    features.clear();
    worker::AssignSlots(rows, r, model.spec().slots, std::span<float>(out->mask).subspan(r * f, f),
                        &features);
    for (const worker::SlottedFeature& x : features) {
      std::span<const float> row = table.Find(x.id);
      if (row.empty()) continue;  // unknown id: a zero row
      const size_t at = r * f + x.slot;
      out->linear[at] = row[0];
      if (k > 0) std::copy_n(row.data() + 1, k, out->emb.data() + at * k);
    }
  }
  return OkStatus();
}

StatusOr<std::vector<float>> Predictor::Predict(const LoadedModel& model,
                                                std::span<const std::string_view> rows,
                                                bool no_label) {
  if (rows.empty()) return InvalidArgumentError("no rows to predict");
  batch_.Clear();
  batch_.dense_dim = model.parser().dense_dim();
  const char* fake_label = model.spec().format == "criteo" ? "0\t" : "0 ";
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string_view line = rows[r];
    if (no_label) {
      line_.assign(fake_label);
      line_.append(rows[r]);
      line = line_;
    }
    Status s = model.parser().Parse(line, &example_);
    if (!s.ok()) return s.WithContext("row " + std::to_string(r));
    batch_.Append(example_);
  }
  RETURN_IF_ERROR(BuildInputs(model, batch_, &inputs_));
  const std::string key = ConfigKey(model.spec().options);
  auto it = models_.find(key);
  if (it == models_.end()) {
    ASSIGN_OR_RETURN(std::unique_ptr<models::CtrModel> ctr,
                     models::CtrModel::Create(model.spec().options));
    it = models_.emplace(key, std::move(ctr)).first;
  }
  std::vector<float> probs(rows.size());
  models::ModelBatch batch{inputs_.batch, inputs_.emb,   inputs_.linear,
                           inputs_.mask,  inputs_.dense, {}};
  ASSIGN_OR_RETURN(
      float loss, it->second->Forward(batch, model.dense_params(), {.logits = {}, .probs = probs}));
  (void)loss;
  return probs;
}

}  // namespace eddy::serving
