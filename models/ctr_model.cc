#include "models/ctr_model.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "models/loss.h"
#include "models/mlp.h"

namespace eddy::models {
namespace {

std::string SizeError(std::string_view what, size_t got, size_t want) {
  return std::string(what) + " has " + std::to_string(got) + " floats, expected " +
         std::to_string(want);
}

bool UsesEmbeddings(ModelKind kind) { return kind != ModelKind::kLr; }
bool UsesMlp(ModelKind kind) { return kind == ModelKind::kWideDeep || kind == ModelKind::kDeepFm; }

}  // namespace

std::string_view ModelKindName(ModelKind kind) {
  switch (kind) {
    case ModelKind::kLr:
      return "lr";
    case ModelKind::kFm:
      return "fm";
    case ModelKind::kWideDeep:
      return "wdl";
    case ModelKind::kDeepFm:
      return "deepfm";
  }
  return "unknown";
}

StatusOr<ModelKind> ParseModelKind(std::string_view name) {
  if (name == "lr") return ModelKind::kLr;
  if (name == "fm") return ModelKind::kFm;
  if (name == "wdl" || name == "widedeep") return ModelKind::kWideDeep;
  if (name == "deepfm") return ModelKind::kDeepFm;
  return InvalidArgumentError("unknown model '" + std::string(name) +
                              "' (expected lr, fm, wdl or deepfm)");
}

CtrModel::CtrModel(ModelOptions options, std::vector<DenseParamSpec> specs,
                   std::unique_ptr<Mlp> mlp)
    : options_(std::move(options)), specs_(std::move(specs)), mlp_(std::move(mlp)) {}

CtrModel::~CtrModel() = default;

StatusOr<std::unique_ptr<CtrModel>> CtrModel::Create(ModelOptions options) {
  const int f = options.num_fields, k = options.emb_dim, d = options.dense_dim;
  if (f <= 0) return InvalidArgumentError("CtrModel: num_fields must be > 0");
  if (k < 0 || d < 0) return InvalidArgumentError("CtrModel: emb_dim and dense_dim must be >= 0");
  if (UsesEmbeddings(options.kind) && k == 0) {
    return InvalidArgumentError("CtrModel: " + std::string(ModelKindName(options.kind)) +
                                " needs emb_dim > 0");
  }
  std::vector<DenseParamSpec> specs;
  specs.push_back({"bias", {1}, Initializer::kZeros, 1, 1});
  if (d > 0) specs.push_back({"dense.weight", {d}, Initializer::kZeros, d, 1});
  std::unique_ptr<Mlp> mlp;
  if (UsesMlp(options.kind)) {
    const int in0 = f * k + d;
    ASSIGN_OR_RETURN(mlp, Mlp::Create(in0, options.hidden));
    int in = in0;
    for (size_t i = 0; i < options.hidden.size(); ++i) {
      const int h = options.hidden[i];
      const std::string prefix = "mlp." + std::to_string(i);
      specs.push_back({prefix + ".weight", {h, in}, Initializer::kHeUniform, in, h});
      specs.push_back({prefix + ".bias", {h}, Initializer::kZeros, in, h});
      in = h;
    }
    specs.push_back({"mlp.out.weight", {in}, Initializer::kXavierUniform, in, 1});
  }
  return std::unique_ptr<CtrModel>(
      new CtrModel(std::move(options), std::move(specs), std::move(mlp)));
}

bool CtrModel::has_fm() const {
  return options_.kind == ModelKind::kFm || options_.kind == ModelKind::kDeepFm;
}

int64_t CtrModel::primitive_builds() const { return mlp_ ? mlp_->primitive_builds() : 0; }

Status CtrModel::Validate(const ModelBatch& batch, DenseParams params, bool need_labels) const {
  if (batch.batch_size <= 0) return InvalidArgumentError("CtrModel: batch_size must be > 0");
  const size_t b = batch.batch_size, f = options_.num_fields, k = options_.emb_dim,
               d = options_.dense_dim;
  if (UsesEmbeddings(options_.kind) && batch.emb.size() != b * f * k) {
    return InvalidArgumentError(SizeError("CtrModel: emb", batch.emb.size(), b * f * k));
  }
  if (batch.linear.size() != b * f) {
    return InvalidArgumentError(SizeError("CtrModel: linear", batch.linear.size(), b * f));
  }
  if (batch.mask.size() != b * f) {
    return InvalidArgumentError(SizeError("CtrModel: mask", batch.mask.size(), b * f));
  }
  if (batch.dense.size() != b * d) {
    return InvalidArgumentError(SizeError("CtrModel: dense", batch.dense.size(), b * d));
  }
  if ((need_labels || !batch.labels.empty()) && batch.labels.size() != b) {
    return InvalidArgumentError(SizeError("CtrModel: labels", batch.labels.size(), b));
  }
  if (params.size() != specs_.size()) {
    return InvalidArgumentError("CtrModel: " + std::to_string(params.size()) +
                                " dense tensors, expected " + std::to_string(specs_.size()));
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (static_cast<int64_t>(params[i].size()) != specs_[i].size()) {
      return InvalidArgumentError(SizeError("CtrModel: dense tensor " + specs_[i].name,
                                            params[i].size(), specs_[i].size()));
    }
  }
  return OkStatus();
}

Status CtrModel::RunForward(const ModelBatch& batch, DenseParams params) {
  const int b = batch.batch_size, f = options_.num_fields, k = options_.emb_dim,
            d = options_.dense_dim;
  logits_.assign(b, params[0][0]);
  size_t next = 1;
  // Wide / first-order part.
  const float* wd = d > 0 ? params[next++].data() : nullptr;
  for (int r = 0; r < b; ++r) {
    const float* lin = batch.linear.data() + static_cast<size_t>(r) * f;
    const float* m = batch.mask.data() + static_cast<size_t>(r) * f;
    float z = 0.0f;
    for (int j = 0; j < f; ++j) z += m[j] * lin[j];
    const float* x = batch.dense.data() + static_cast<size_t>(r) * d;
    for (int j = 0; j < d; ++j) z += wd[j] * x[j];
    logits_[r] += z;
  }
  // FM: 0.5 * sum_k [(sum_f v)^2 - sum_f v^2], v = mask * emb; keeps sum_f v for backward.
  if (has_fm()) {
    fm_sum_.assign(static_cast<size_t>(b) * k, 0.0f);
    for (int r = 0; r < b; ++r) {
      float* s = fm_sum_.data() + static_cast<size_t>(r) * k;
      const float* m = batch.mask.data() + static_cast<size_t>(r) * f;
      float sq = 0.0f;
      for (int j = 0; j < f; ++j) {
        const float* e = batch.emb.data() + (static_cast<size_t>(r) * f + j) * k;
        const float mj = m[j];
        for (int c = 0; c < k; ++c) {
          const float v = mj * e[c];
          s[c] += v;
          sq += v * v;
        }
      }
      float ss = 0.0f;
      for (int c = 0; c < k; ++c) ss += s[c] * s[c];
      logits_[r] += 0.5f * (ss - sq);
    }
  }
  // Deep part: MLP over [mask * emb, dense], then a linear output unit.
  if (has_mlp()) {
    const size_t fk = static_cast<size_t>(f) * k, in = fk + d;
    mlp_in_.resize(static_cast<size_t>(b) * in);
    for (int r = 0; r < b; ++r) {
      float* row = mlp_in_.data() + static_cast<size_t>(r) * in;
      const float* m = batch.mask.data() + static_cast<size_t>(r) * f;
      const float* e = batch.emb.data() + static_cast<size_t>(r) * fk;
      for (int j = 0; j < f; ++j) {
        for (int c = 0; c < k; ++c) row[j * k + c] = m[j] * e[j * k + c];
      }
      if (d > 0)
        std::memcpy(row + fk, batch.dense.data() + static_cast<size_t>(r) * d, sizeof(float) * d);
    }
    const size_t n = options_.hidden.size();
    std::vector<std::span<const float>> w(n), bias(n);
    for (size_t i = 0; i < n; ++i) {
      w[i] = params[next + 2 * i];
      bias[i] = params[next + 2 * i + 1];
    }
    ASSIGN_OR_RETURN(mlp_out_, mlp_->Forward(b, mlp_in_, w, bias));
    const float* wo = params[next + 2 * n].data();
    const int h = options_.hidden.back();
    for (int r = 0; r < b; ++r) {
      const float* a = mlp_out_.data() + static_cast<size_t>(r) * h;
      float z = 0.0f;
      for (int c = 0; c < h; ++c) z += a[c] * wo[c];
      logits_[r] += z;
    }
  }
  return OkStatus();
}

StatusOr<float> CtrModel::Forward(const ModelBatch& batch, DenseParams params,
                                  const ModelOutputs& out) {
  RETURN_IF_ERROR(Validate(batch, params, /*need_labels=*/false));
  const size_t b = batch.batch_size;
  if ((!out.logits.empty() && out.logits.size() != b) ||
      (!out.probs.empty() && out.probs.size() != b)) {
    return InvalidArgumentError("CtrModel: outputs must hold batch_size floats");
  }
  RETURN_IF_ERROR(RunForward(batch, params));
  double loss = 0.0;
  for (size_t r = 0; r < b; ++r) {
    if (!out.logits.empty()) out.logits[r] = logits_[r];
    if (!out.probs.empty()) out.probs[r] = Sigmoid(logits_[r]);
    if (!batch.labels.empty()) loss += LogLoss(logits_[r], batch.labels[r]);
  }
  return static_cast<float>(loss / static_cast<double>(b));
}

StatusOr<float> CtrModel::ForwardBackward(const ModelBatch& batch, DenseParams params,
                                          const ModelGradients& grads, const ModelOutputs& out) {
  RETURN_IF_ERROR(Validate(batch, params, /*need_labels=*/true));
  const int b = batch.batch_size, f = options_.num_fields, k = options_.emb_dim,
            d = options_.dense_dim;
  const size_t bf = static_cast<size_t>(b) * f, bfk = bf * k;
  if (grads.linear.size() != bf) {
    return InvalidArgumentError(SizeError("CtrModel: linear gradient", grads.linear.size(), bf));
  }
  if (!(grads.emb.empty() && !UsesEmbeddings(options_.kind)) && grads.emb.size() != bfk) {
    return InvalidArgumentError(SizeError("CtrModel: emb gradient", grads.emb.size(), bfk));
  }
  if (grads.dense.size() != specs_.size()) {
    return InvalidArgumentError("CtrModel: " + std::to_string(grads.dense.size()) +
                                " dense gradients, expected " + std::to_string(specs_.size()));
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (static_cast<int64_t>(grads.dense[i].size()) != specs_[i].size()) {
      return InvalidArgumentError(SizeError("CtrModel: gradient of " + specs_[i].name,
                                            grads.dense[i].size(), specs_[i].size()));
    }
  }
  ASSIGN_OR_RETURN(const float loss, Forward(batch, params, out));

  // dL/dz_r for the mean loss: (p_r - y_r) / B.
  std::vector<float> g(b);
  const float inv_b = 1.0f / static_cast<float>(b);
  for (int r = 0; r < b; ++r) g[r] = (Sigmoid(logits_[r]) - batch.labels[r]) * inv_b;

  size_t next = 0;
  float dbias = 0.0f;
  for (int r = 0; r < b; ++r) dbias += g[r];
  grads.dense[next++][0] = dbias;
  if (d > 0) {
    std::span<float> dwd = grads.dense[next++];
    std::fill(dwd.begin(), dwd.end(), 0.0f);
    for (int r = 0; r < b; ++r) {
      const float* x = batch.dense.data() + static_cast<size_t>(r) * d;
      for (int j = 0; j < d; ++j) dwd[j] += g[r] * x[j];
    }
  }
  for (int r = 0; r < b; ++r) {
    const float* m = batch.mask.data() + static_cast<size_t>(r) * f;
    float* dl = grads.linear.data() + static_cast<size_t>(r) * f;
    for (int j = 0; j < f; ++j) dl[j] = g[r] * m[j];
  }
  if (!grads.emb.empty()) std::fill(grads.emb.begin(), grads.emb.end(), 0.0f);
  if (has_fm()) {
    // d/dv_fk of the interaction is S_k - v_fk; dv/demb = mask.
    for (int r = 0; r < b; ++r) {
      const float* s = fm_sum_.data() + static_cast<size_t>(r) * k;
      const float* m = batch.mask.data() + static_cast<size_t>(r) * f;
      for (int j = 0; j < f; ++j) {
        const size_t off = (static_cast<size_t>(r) * f + j) * k;
        const float* e = batch.emb.data() + off;
        float* de = grads.emb.data() + off;
        const float gm = g[r] * m[j];
        for (int c = 0; c < k; ++c) de[c] += gm * (s[c] - m[j] * e[c]);
      }
    }
  }
  if (has_mlp()) {
    const size_t n = options_.hidden.size();
    const int h = options_.hidden.back();
    const float* wo = params[next + 2 * n].data();
    std::span<float> dwo = grads.dense[next + 2 * n];
    std::fill(dwo.begin(), dwo.end(), 0.0f);
    mlp_dout_.resize(static_cast<size_t>(b) * h);
    for (int r = 0; r < b; ++r) {
      const float* a = mlp_out_.data() + static_cast<size_t>(r) * h;
      float* da = mlp_dout_.data() + static_cast<size_t>(r) * h;
      for (int c = 0; c < h; ++c) {
        dwo[c] += g[r] * a[c];
        da[c] = g[r] * wo[c];
      }
    }
    const size_t fk = static_cast<size_t>(f) * k, in = fk + d;
    mlp_dx_.resize(static_cast<size_t>(b) * in);
    std::vector<std::span<float>> dw(n), db(n);
    for (size_t i = 0; i < n; ++i) {
      dw[i] = grads.dense[next + 2 * i];
      db[i] = grads.dense[next + 2 * i + 1];
    }
    RETURN_IF_ERROR(mlp_->Backward(mlp_dout_, mlp_dx_, dw, db));
    for (int r = 0; r < b; ++r) {
      const float* m = batch.mask.data() + static_cast<size_t>(r) * f;
      const float* dx = mlp_dx_.data() + static_cast<size_t>(r) * in;
      float* de = grads.emb.data() + static_cast<size_t>(r) * fk;
      for (int j = 0; j < f; ++j) {
        for (int c = 0; c < k; ++c) de[j * k + c] += m[j] * dx[j * k + c];
      }
    }
  }
  return loss;
}

}  // namespace eddy::models
