#include "models/mlp.h"

#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "dnnl.hpp"

namespace eddy::models {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

Status FromDnnl(const dnnl::error& e, std::string_view where) {
  return InternalError("oneDNN error in Mlp::" + std::string(where) + ": " + e.what() +
                       " (status " + std::to_string(static_cast<int>(e.status)) + ")");
}

// oneDNN takes non-const handles; inputs are never written through them.
void* Handle(const float* p) { return const_cast<float*>(p); }

// A weights-like tensor as the caller holds it (plain row-major) and as a primitive
// wants it; `prim` aliases `user` unless the layouts differ, in which case `reorder`
// converts between them.
struct Converted {
  memory user;
  memory prim;
  std::optional<dnnl::reorder> reorder;
  bool user_to_prim = true;

  void Init(const memory::desc& user_md, const memory::desc& prim_md, const dnnl::engine& eng,
            bool to_prim) {
    user_to_prim = to_prim;
    user = memory(user_md, eng, DNNL_MEMORY_NONE);
    if (user_md == prim_md) {
      prim = user;
      reorder.reset();
    } else {
      prim = memory(prim_md, eng);  // oneDNN-owned scratch
      reorder = to_prim ? dnnl::reorder(user, prim) : dnnl::reorder(prim, user);
    }
  }
  void Run(dnnl::stream& s) {
    if (!reorder) return;
    if (user_to_prim) {
      reorder->execute(s, user, prim);
    } else {
      reorder->execute(s, prim, user);
    }
  }
};

struct Layer {
  int in = 0;
  int out = 0;
  dnnl::inner_product_forward fwd;
  dnnl::eltwise_backward relu_bwd;
  dnnl::inner_product_backward_data bwd_data;
  dnnl::inner_product_backward_weights bwd_weights;
  memory src, dst, bias, diff_dst, diff_src, diff_bias;
  Converted w_fwd;                      // user -> forward layout
  Converted w_bwd;                      // user -> backward-data layout
  Converted dw;                         // backward-weights layout -> user
  bool bwd_shares_fwd_weights = false;  // backward-data reads w_fwd.prim
};

}  // namespace

struct Mlp::State {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<Layer> layers;
  std::vector<std::vector<float>> act;   // act[i]: batch x hidden[i]
  std::vector<std::vector<float>> dact;  // dact[i]: batch x hidden[i]
};

Mlp::Mlp(int input_dim, std::vector<int> hidden, std::unique_ptr<State> state)
    : input_dim_(input_dim), hidden_(std::move(hidden)), state_(std::move(state)) {}

Mlp::~Mlp() = default;

StatusOr<std::unique_ptr<Mlp>> Mlp::Create(int input_dim, std::vector<int> hidden) {
  if (input_dim <= 0) return InvalidArgumentError("Mlp: input_dim must be > 0");
  if (hidden.empty()) return InvalidArgumentError("Mlp: needs at least one hidden layer");
  for (int h : hidden) {
    if (h <= 0) return InvalidArgumentError("Mlp: hidden sizes must be > 0");
  }
  try {
    auto state = std::make_unique<State>();
    return std::unique_ptr<Mlp>(new Mlp(input_dim, std::move(hidden), std::move(state)));
  } catch (const dnnl::error& e) {
    return FromDnnl(e, "Create");
  }
}

Status Mlp::Build(int batch) {
  State& s = *state_;
  const dnnl::engine& eng = s.engine;
  const memory::dim b = batch;
  s.layers.assign(hidden_.size(), Layer{});
  s.act.assign(hidden_.size(), {});
  s.dact.assign(hidden_.size(), {});
  try {
    int in = input_dim_;
    for (size_t i = 0; i < hidden_.size(); ++i) {
      Layer& l = s.layers[i];
      l.in = in;
      l.out = hidden_[i];
      s.act[i].assign(static_cast<size_t>(batch) * l.out, 0.0f);
      s.dact[i].assign(static_cast<size_t>(batch) * l.out, 0.0f);

      const memory::desc src_md({b, l.in}, Dt::f32, Tag::nc);
      const memory::desc dst_md({b, l.out}, Dt::f32, Tag::nc);
      const memory::desc w_user_md({l.out, l.in}, Dt::f32, Tag::oi);
      const memory::desc w_any_md({l.out, l.in}, Dt::f32, Tag::any);
      const memory::desc bias_md({l.out}, Dt::f32, Tag::x);

      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(ops);
      const dnnl::inner_product_forward::primitive_desc fwd_pd(
          dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_training, src_md, w_any_md,
                                            bias_md, dst_md),
          attr, eng);
      l.fwd = dnnl::inner_product_forward(fwd_pd);
      l.w_fwd.Init(w_user_md, fwd_pd.weights_desc(), eng, /*user_to_prim=*/true);

      // ReLU backward from the (post-ReLU) output: dpre = dy * (y > 0), in place.
      const dnnl::eltwise_forward::primitive_desc relu_hint(
          dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training,
                                      dnnl::algorithm::eltwise_relu_use_dst_for_bwd, dst_md, 0.0f,
                                      0.0f),
          eng);
      l.relu_bwd = dnnl::eltwise_backward(dnnl::eltwise_backward::primitive_desc(
          dnnl::eltwise_backward::desc(dnnl::algorithm::eltwise_relu_use_dst_for_bwd, dst_md,
                                       dst_md, 0.0f, 0.0f),
          eng, relu_hint));

      const dnnl::inner_product_backward_data::primitive_desc bwd_data_pd(
          dnnl::inner_product_backward_data::desc(src_md, w_any_md, dst_md), eng, fwd_pd);
      l.bwd_data = dnnl::inner_product_backward_data(bwd_data_pd);
      // With a blocked layout the forward reorder's output is reused when it fits.
      l.bwd_shares_fwd_weights = bwd_data_pd.weights_desc() == fwd_pd.weights_desc();
      if (!l.bwd_shares_fwd_weights) {
        l.w_bwd.Init(w_user_md, bwd_data_pd.weights_desc(), eng, /*user_to_prim=*/true);
      }

      const dnnl::inner_product_backward_weights::primitive_desc bwd_w_pd(
          dnnl::inner_product_backward_weights::desc(src_md, w_any_md, bias_md, dst_md), eng,
          fwd_pd);
      l.bwd_weights = dnnl::inner_product_backward_weights(bwd_w_pd);
      l.dw.Init(w_user_md, bwd_w_pd.diff_weights_desc(), eng, /*user_to_prim=*/false);

      l.src =
          i == 0 ? memory(src_md, eng, DNNL_MEMORY_NONE) : memory(src_md, eng, s.act[i - 1].data());
      l.diff_src = i == 0 ? memory(src_md, eng, DNNL_MEMORY_NONE)
                          : memory(src_md, eng, s.dact[i - 1].data());
      l.dst = memory(dst_md, eng, s.act[i].data());
      l.diff_dst = memory(dst_md, eng, s.dact[i].data());
      l.bias = memory(bias_md, eng, DNNL_MEMORY_NONE);
      l.diff_bias = memory(bias_md, eng, DNNL_MEMORY_NONE);
      in = l.out;
    }
  } catch (const dnnl::error& e) {
    batch_ = 0;
    return FromDnnl(e, "Build");
  }
  batch_ = batch;
  ++primitive_builds_;
  return OkStatus();
}

StatusOr<std::span<const float>> Mlp::Forward(int batch, std::span<const float> x,
                                              std::span<const std::span<const float>> weights,
                                              std::span<const std::span<const float>> biases) {
  forward_done_ = false;
  if (batch <= 0) return InvalidArgumentError("Mlp::Forward: batch must be > 0");
  if (x.size() != static_cast<size_t>(batch) * input_dim_) {
    return InvalidArgumentError("Mlp::Forward: x has " + std::to_string(x.size()) +
                                " floats, expected batch*input_dim = " +
                                std::to_string(static_cast<size_t>(batch) * input_dim_));
  }
  if (weights.size() != hidden_.size() || biases.size() != hidden_.size()) {
    return InvalidArgumentError("Mlp::Forward: expected " + std::to_string(hidden_.size()) +
                                " weight and bias tensors");
  }
  int in = input_dim_;
  for (size_t i = 0; i < hidden_.size(); ++i) {
    if (weights[i].size() != static_cast<size_t>(hidden_[i]) * in ||
        biases[i].size() != static_cast<size_t>(hidden_[i])) {
      return InvalidArgumentError("Mlp::Forward: layer " + std::to_string(i) +
                                  " weights/bias have the wrong size");
    }
    in = hidden_[i];
  }
  if (batch != batch_) RETURN_IF_ERROR(Build(batch));

  State& s = *state_;
  try {
    for (size_t i = 0; i < s.layers.size(); ++i) {
      Layer& l = s.layers[i];
      if (i == 0) {
        l.src.set_data_handle(Handle(x.data()));
        l.diff_src.set_data_handle(nullptr);
      }
      l.w_fwd.user.set_data_handle(Handle(weights[i].data()));
      if (!l.bwd_shares_fwd_weights) l.w_bwd.user.set_data_handle(Handle(weights[i].data()));
      l.bias.set_data_handle(Handle(biases[i].data()));
      l.w_fwd.Run(s.stream);
      l.fwd.execute(s.stream, {{DNNL_ARG_SRC, l.src},
                               {DNNL_ARG_WEIGHTS, l.w_fwd.prim},
                               {DNNL_ARG_BIAS, l.bias},
                               {DNNL_ARG_DST, l.dst}});
    }
    s.stream.wait();
  } catch (const dnnl::error& e) {
    return FromDnnl(e, "Forward");
  }
  forward_done_ = true;
  return std::span<const float>(s.act.back());
}

Status Mlp::Backward(std::span<const float> d_out, std::span<float> dx,
                     std::span<const std::span<float>> d_weights,
                     std::span<const std::span<float>> d_biases) {
  if (!forward_done_) return FailedPreconditionError("Mlp::Backward: no preceding Forward");
  State& s = *state_;
  const size_t b = static_cast<size_t>(batch_);
  if (d_out.size() != b * hidden_.back()) {
    return InvalidArgumentError("Mlp::Backward: d_out has the wrong size");
  }
  if (!dx.empty() && dx.size() != b * input_dim_) {
    return InvalidArgumentError("Mlp::Backward: dx has the wrong size");
  }
  if (d_weights.size() != hidden_.size() || d_biases.size() != hidden_.size()) {
    return InvalidArgumentError("Mlp::Backward: expected " + std::to_string(hidden_.size()) +
                                " weight and bias gradients");
  }
  for (size_t i = 0; i < hidden_.size(); ++i) {
    const Layer& l = s.layers[i];
    if (d_weights[i].size() != static_cast<size_t>(l.out) * l.in ||
        d_biases[i].size() != static_cast<size_t>(l.out)) {
      return InvalidArgumentError("Mlp::Backward: layer " + std::to_string(i) +
                                  " gradient buffers have the wrong size");
    }
  }
  std::memcpy(s.dact.back().data(), d_out.data(), d_out.size() * sizeof(float));
  try {
    for (size_t j = s.layers.size(); j-- > 0;) {
      Layer& l = s.layers[j];
      l.relu_bwd.execute(s.stream, {{DNNL_ARG_DST, l.dst},
                                    {DNNL_ARG_DIFF_DST, l.diff_dst},
                                    {DNNL_ARG_DIFF_SRC, l.diff_dst}});
      l.dw.user.set_data_handle(d_weights[j].data());
      l.diff_bias.set_data_handle(d_biases[j].data());
      l.bwd_weights.execute(s.stream, {{DNNL_ARG_SRC, l.src},
                                       {DNNL_ARG_DIFF_DST, l.diff_dst},
                                       {DNNL_ARG_DIFF_WEIGHTS, l.dw.prim},
                                       {DNNL_ARG_DIFF_BIAS, l.diff_bias}});
      l.dw.Run(s.stream);
      if (j == 0) {
        if (dx.empty()) continue;
        l.diff_src.set_data_handle(dx.data());
      }
      if (!l.bwd_shares_fwd_weights) l.w_bwd.Run(s.stream);
      l.bwd_data.execute(
          s.stream, {{DNNL_ARG_DIFF_DST, l.diff_dst},
                     {DNNL_ARG_WEIGHTS, l.bwd_shares_fwd_weights ? l.w_fwd.prim : l.w_bwd.prim},
                     {DNNL_ARG_DIFF_SRC, l.diff_src}});
    }
    s.stream.wait();
  } catch (const dnnl::error& e) {
    return FromDnnl(e, "Backward");
  }
  return OkStatus();
}

}  // namespace eddy::models
