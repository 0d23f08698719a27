// CtrModel: LR, FM, Wide&Deep and DeepFM forward/backward over one mini-batch.
// The model holds no parameters: each step the caller passes the pulled embeddings,
// first-order weights and dense tensors, and receives gradients of the mean logloss.
// Thread-safety: a CtrModel is not thread-safe (it owns a oneDNN stream and scratch
// buffers); use one model object per worker thread. oneDNN parallelises the MLP with
// OpenMP (OMP_NUM_THREADS, set by the process); on a busy host OMP_WAIT_POLICY=passive
// or fewer threads avoids collapse from spinning barriers.
#ifndef EDDY_MODELS_CTR_MODEL_H_
#define EDDY_MODELS_CTR_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "models/init.h"

namespace eddy::models {

class Mlp;

enum class ModelKind {
  kLr,        // bias + sum_f linear + dense · w_dense
  kFm,        // LR + 0.5 * sum_k[(sum_f v_fk)^2 - sum_f v_fk^2]
  kWideDeep,  // LR + MLP([emb..., dense]) · w_out
  kDeepFm,    // FM + MLP([emb..., dense]) · w_out
};

std::string_view ModelKindName(ModelKind kind);
// Accepts "lr", "fm", "wdl" / "widedeep", "deepfm". Errors: InvalidArgument.
StatusOr<ModelKind> ParseModelKind(std::string_view name);

struct ModelOptions {
  ModelKind kind = ModelKind::kDeepFm;
  int num_fields = 0;                         // F: slots per row; a missing slot has mask 0
  int emb_dim = 16;                           // K; may be 0 for LR
  int dense_dim = 0;                          // D: dense features per row; may be 0
  std::vector<int> hidden = {400, 400, 400};  // MLP sizes (Wide&Deep, DeepFM), ReLU
};

// One mini-batch as pulled by a worker; all row-major, caller-owned, read-only.
// `mask` is a multiplier per slot (1 present, 0 missing): a missing slot's emb and
// linear values are ignored and its gradients are 0.
struct ModelBatch {
  int batch_size = 0;             // B
  std::span<const float> emb;     // B*F*K
  std::span<const float> linear;  // B*F
  std::span<const float> mask;    // B*F
  std::span<const float> dense;   // B*D
  std::span<const float> labels;  // B, in {0,1}; may be empty for Forward
};

// Optional per-row outputs (empty span = not wanted), each B floats.
struct ModelOutputs {
  std::span<float> logits;
  std::span<float> probs;
};

// Gradients of the mean logloss, written (not accumulated) into caller buffers.
struct ModelGradients {
  std::span<float> emb;                 // B*F*K (may be empty for LR)
  std::span<float> linear;              // B*F
  std::vector<std::span<float>> dense;  // one per dense_params(), same order and sizes
};

// Dense parameter values, one span per dense_params() entry, same order.
using DenseParams = std::span<const std::span<const float>>;

class CtrModel {
 public:
  // Errors: InvalidArgument for bad sizes (F <= 0, K < 0, K == 0 for a model with
  // embeddings, D < 0, empty/non-positive hidden for an MLP model).
  static StatusOr<std::unique_ptr<CtrModel>> Create(ModelOptions options);
  ~CtrModel();
  CtrModel(const CtrModel&) = delete;
  CtrModel& operator=(const CtrModel&) = delete;

  const ModelOptions& options() const { return options_; }
  // The dense tensors this model needs, in the order Forward/ForwardBackward take
  // them: "bias" {1}; "dense.weight" {D} if D > 0; for MLP models "mlp.<i>.weight"
  // {h_i, in_i}, "mlp.<i>.bias" {h_i}, "mlp.out.weight" {h_last} (the output unit
  // has no bias of its own: "bias" is shared by all parts).
  const std::vector<DenseParamSpec>& dense_params() const { return specs_; }

  // Forward only. Returns the mean logloss if labels are given, else 0.
  // Errors: InvalidArgument on size mismatch; Internal on a oneDNN failure.
  StatusOr<float> Forward(const ModelBatch& batch, DenseParams params,
                          const ModelOutputs& out = {});
  // Forward and backward; returns the mean logloss. Requires labels.
  StatusOr<float> ForwardBackward(const ModelBatch& batch, DenseParams params,
                                  const ModelGradients& grads, const ModelOutputs& out = {});

  // oneDNN primitive (re)builds so far: one per new batch size (0 for LR/FM).
  int64_t primitive_builds() const;

 private:
  CtrModel(ModelOptions options, std::vector<DenseParamSpec> specs, std::unique_ptr<Mlp> mlp);
  Status Validate(const ModelBatch& batch, DenseParams params, bool need_labels) const;
  Status RunForward(const ModelBatch& batch, DenseParams params);

  bool has_fm() const;
  bool has_mlp() const { return mlp_ != nullptr; }

  const ModelOptions options_;
  const std::vector<DenseParamSpec> specs_;
  std::unique_ptr<Mlp> mlp_;  // null for LR and FM
  // Scratch of the last forward pass, reused across calls.
  std::vector<float> logits_;       // B
  std::vector<float> fm_sum_;       // B*K: sum_f mask*emb (FM models)
  std::vector<float> mlp_in_;       // B*(F*K+D)
  std::vector<float> mlp_dx_;       // B*(F*K+D)
  std::vector<float> mlp_dout_;     // B*h_last
  std::span<const float> mlp_out_;  // B*h_last, owned by mlp_
};

}  // namespace eddy::models

#endif  // EDDY_MODELS_CTR_MODEL_H_
