#include "common/table_config.h"

#include <charconv>
#include <cmath>
#include <set>
#include <sstream>

namespace eddy {
namespace {

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

StatusOr<float> ParseFloat(std::string_view v) {
  float f = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), f);
  if (ec != std::errc() || p != v.data() + v.size() || !std::isfinite(f)) {
    return InvalidArgumentError("'" + std::string(v) + "' is not a number");
  }
  return f;
}

StatusOr<uint64_t> ParseUint(std::string_view v) {
  uint64_t u = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), u);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return InvalidArgumentError("'" + std::string(v) + "' is not a non-negative integer");
  }
  return u;
}

void SetOptimizerDefaults(proto::OptimizerConfig* o) {
  const std::string& k = o->kind();
  if (k == "sgd") {
    o->set_learning_rate(0.01f);
  } else if (k == "adagrad") {
    o->set_learning_rate(0.05f);
    o->set_epsilon(1e-8f);
    o->set_initial_accumulator(0.0f);
  } else if (k == "adam") {
    o->set_learning_rate(0.001f);
    o->set_beta1(0.9f);
    o->set_beta2(0.999f);
    o->set_epsilon(1e-8f);
  } else if (k == "ftrl") {
    o->set_learning_rate(0.05f);
    o->set_ftrl_beta(1.0f);
  }
}

// Applies an optimizer or initializer key to `o` / `init`. Returns NotFound
// for a key of neither kind.
Status ApplyUpdateKey(proto::OptimizerConfig* o, proto::InitializerConfig* init,
                      std::string_view key, std::string_view value) {
  auto set_float = [&](void (proto::OptimizerConfig::*setter)(float)) -> Status {
    ASSIGN_OR_RETURN(float f, ParseFloat(value));
    (o->*setter)(f);
    return OkStatus();
  };
  if (key == "opt") {
    o->Clear();
    o->set_kind(std::string(value));
    SetOptimizerDefaults(o);
  } else if (key == "lr") {
    return set_float(&proto::OptimizerConfig::set_learning_rate);
  } else if (key == "beta1") {
    return set_float(&proto::OptimizerConfig::set_beta1);
  } else if (key == "beta2") {
    return set_float(&proto::OptimizerConfig::set_beta2);
  } else if (key == "eps") {
    return set_float(&proto::OptimizerConfig::set_epsilon);
  } else if (key == "l1") {
    return set_float(&proto::OptimizerConfig::set_l1);
  } else if (key == "l2") {
    return set_float(&proto::OptimizerConfig::set_l2);
  } else if (key == "acc") {
    return set_float(&proto::OptimizerConfig::set_initial_accumulator);
  } else if (key == "ftrl_beta") {
    return set_float(&proto::OptimizerConfig::set_ftrl_beta);
  } else if (key == "init") {
    init->set_kind(std::string(value));
  } else if (key == "init_scale") {
    ASSIGN_OR_RETURN(float f, ParseFloat(value));
    init->set_scale(f);
  } else if (key == "seed") {
    ASSIGN_OR_RETURN(uint64_t s, ParseUint(value));
    init->set_seed(s);
  } else {
    return NotFoundError(std::string(key));
  }
  return OkStatus();
}

constexpr std::string_view kHeadPrefix = "head_";

Status ApplyKey(proto::TableConfig* t, std::string_view key, std::string_view value) {
  if (key == "dim") {
    ASSIGN_OR_RETURN(uint64_t d, ParseUint(value));
    t->set_dim(static_cast<uint32_t>(d));
    if (d > 65536) return InvalidArgumentError("dim must be at most 65536");
    return OkStatus();
  }
  if (key == "shape") {
    t->set_dense(true);
    t->clear_shape();
    for (std::string_view part : Split(value, 'x')) {
      ASSIGN_OR_RETURN(uint64_t d, ParseUint(part));
      t->add_shape(d);
    }
    return OkStatus();
  }
  if (key == "admit_after") {
    ASSIGN_OR_RETURN(uint64_t n, ParseUint(value));
    if (n > 65535) return InvalidArgumentError("admit_after must be at most 65535");
    t->mutable_admission()->set_min_count(static_cast<uint32_t>(n));
    return OkStatus();
  }
  if (key == "admit_prob") {
    ASSIGN_OR_RETURN(float p, ParseFloat(value));
    t->mutable_admission()->set_probability(p);
    return OkStatus();
  }
  if (key == "head") {
    ASSIGN_OR_RETURN(uint64_t d, ParseUint(value));
    if (d > 65536) return InvalidArgumentError("head must be at most 65536");
    t->mutable_head()->set_dim(static_cast<uint32_t>(d));
    return OkStatus();
  }
  Status s;
  if (key.starts_with(kHeadPrefix) && key != "head_dim") {
    proto::RowHead* head = t->mutable_head();
    s = ApplyUpdateKey(head->mutable_optimizer(), head->mutable_initializer(),
                       key.substr(kHeadPrefix.size()), value);
  } else {
    s = ApplyUpdateKey(t->mutable_optimizer(), t->mutable_initializer(), key, value);
  }
  if (s.code() == StatusCode::kNotFound) {
    return InvalidArgumentError(
        "unknown key '" + std::string(key) +
        "' (known: dim, shape, opt, lr, beta1, beta2, eps, l1, l2, acc, ftrl_beta, init, "
        "init_scale, seed, admit_after, admit_prob; head=N and head_<key> for the first N floats "
        "of "
        "every row)");
  }
  return s;
}

bool IsOptKey(std::string_view k) { return k == "opt" || k == "head_opt"; }

Status ValidateUpdate(const std::string& ctx, const proto::OptimizerConfig& o,
                      const proto::InitializerConfig& init) {
  if (o.kind() != "sgd" && o.kind() != "adagrad" && o.kind() != "adam" && o.kind() != "ftrl") {
    return InvalidArgumentError(ctx + ": unknown optimizer '" + o.kind() +
                                "' (sgd, adagrad, adam, ftrl)");
  }
  if (!(o.learning_rate() > 0)) return InvalidArgumentError(ctx + ": lr must be > 0");
  if (o.l1() < 0 || o.l2() < 0) return InvalidArgumentError(ctx + ": l1 and l2 must be >= 0");
  if (o.l1() > 0 && o.kind() != "ftrl") {
    return InvalidArgumentError(
        ctx + ": l1 is only supported by opt=ftrl (its proximal step gives exact zeros)");
  }
  if (o.kind() == "adam" && (o.beta1() < 0 || o.beta1() >= 1 || o.beta2() < 0 || o.beta2() >= 1)) {
    return InvalidArgumentError(ctx + ": adam needs 0 <= beta1, beta2 < 1");
  }
  if (o.initial_accumulator() < 0) return InvalidArgumentError(ctx + ": acc must be >= 0");
  if (init.kind() != "zeros" && init.kind() != "uniform" && init.kind() != "normal") {
    return InvalidArgumentError(ctx + ": unknown initializer '" + init.kind() +
                                "' (zeros, uniform, normal)");
  }
  if (init.scale() < 0) return InvalidArgumentError(ctx + ": init_scale must be >= 0");
  return OkStatus();
}

}  // namespace

StatusOr<std::vector<proto::TableConfig>> ParseTableSpecs(std::string_view spec) {
  std::vector<proto::TableConfig> tables;
  std::set<std::string> names;
  for (std::string_view entry : Split(spec, ';')) {
    entry = Trim(entry);
    if (entry.empty()) continue;
    size_t colon = entry.find(':');
    std::string name(Trim(entry.substr(0, colon)));
    if (name.empty())
      return InvalidArgumentError("table spec '" + std::string(entry) + "' has no name");
    if (!names.insert(name).second)
      return InvalidArgumentError("table '" + name + "' is defined twice");
    proto::TableConfig t;
    t.set_name(name);
    t.mutable_optimizer()->set_kind("adagrad");
    SetOptimizerDefaults(t.mutable_optimizer());
    t.mutable_initializer()->set_kind("zeros");
    // opt= first, so that later keys override its defaults whatever their order.
    std::vector<std::pair<std::string_view, std::string_view>> kvs;
    if (colon != std::string_view::npos) {
      for (std::string_view kv : Split(entry.substr(colon + 1), ',')) {
        kv = Trim(kv);
        if (kv.empty()) continue;
        size_t eq = kv.find('=');
        if (eq == std::string_view::npos) {
          return InvalidArgumentError("table '" + name + "': '" + std::string(kv) +
                                      "' is not key=value");
        }
        kvs.emplace_back(Trim(kv.substr(0, eq)), Trim(kv.substr(eq + 1)));
      }
    }
    // A head starts as a copy of the row's optimizer and initializer (so head=N
    // alone changes nothing); its own head_opt= and head_ keys come after.
    for (auto& [k, v] : kvs) {
      if (k == "opt") RETURN_IF_ERROR(ApplyKey(&t, k, v).WithContext("table '" + name + "'"));
    }
    for (auto& [k, v] : kvs) {
      if (!k.starts_with(kHeadPrefix) && !IsOptKey(k))
        RETURN_IF_ERROR(ApplyKey(&t, k, v).WithContext("table '" + name + "'"));
    }
    if (t.head().dim() > 0) {
      *t.mutable_head()->mutable_optimizer() = t.optimizer();
      *t.mutable_head()->mutable_initializer() = t.initializer();
    }
    for (auto& [k, v] : kvs) {
      if (k == "head_opt") RETURN_IF_ERROR(ApplyKey(&t, k, v).WithContext("table '" + name + "'"));
    }
    for (auto& [k, v] : kvs) {
      if (k.starts_with(kHeadPrefix) && !IsOptKey(k))
        RETURN_IF_ERROR(ApplyKey(&t, k, v).WithContext("table '" + name + "'"));
    }
    RETURN_IF_ERROR(ValidateTableConfig(t));
    tables.push_back(std::move(t));
  }
  if (tables.empty())
    return InvalidArgumentError("no table defined in '" + std::string(spec) + "'");
  return tables;
}

Status ValidateTableConfig(const proto::TableConfig& t) {
  std::string ctx = "table '" + t.name() + "'";
  if (t.name().empty()) return InvalidArgumentError("a table has an empty name");
  if (t.dense()) {
    if (t.shape_size() == 0) return InvalidArgumentError(ctx + ": dense tensor needs shape=AxB...");
    for (uint64_t d : t.shape()) {
      if (d == 0) return InvalidArgumentError(ctx + ": shape has a zero dimension");
    }
    if (DenseElementCount(t) > (uint64_t{1} << 32)) {
      return InvalidArgumentError(ctx + ": dense tensor larger than 2^32 elements");
    }
    if (t.dim() != 0)
      return InvalidArgumentError(ctx + ": give either dim= (sparse) or shape= (dense), not both");
  } else if (t.dim() == 0) {
    return InvalidArgumentError(
        ctx + ": sparse table needs dim=N with N >= 1 (or shape= for a dense tensor)");
  }
  RETURN_IF_ERROR(ValidateUpdate(ctx, t.optimizer(), t.initializer()));
  if (t.has_admission()) {
    const float p = t.admission().probability();
    if (!(p >= 0 && p <= 1)) return InvalidArgumentError(ctx + ": admit_prob must be in [0, 1]");
    if (t.dense() && (t.admission().min_count() > 1 || (p > 0 && p < 1))) {
      return InvalidArgumentError(ctx + ": admit_after / admit_prob are for sparse tables only");
    }
  }
  if (t.has_head() && t.head().dim() > 0) {
    if (t.dense()) return InvalidArgumentError(ctx + ": head= is for sparse tables only");
    if (t.head().dim() >= t.dim()) {
      return InvalidArgumentError(ctx + ": head=" + std::to_string(t.head().dim()) +
                                  " must be smaller than dim=" + std::to_string(t.dim()));
    }
    RETURN_IF_ERROR(ValidateUpdate(ctx + " (head)", t.head().optimizer(), t.head().initializer()));
  }
  return OkStatus();
}

uint64_t DenseElementCount(const proto::TableConfig& t) {
  uint64_t n = 1;
  for (uint64_t d : t.shape()) n *= d;
  return t.shape_size() == 0 ? 0 : n;
}

std::string DescribeTable(const proto::TableConfig& t) {
  std::ostringstream os;
  os << t.name() << ": ";
  if (t.dense()) {
    os << "dense shape=";
    for (int i = 0; i < t.shape_size(); ++i) os << (i ? "x" : "") << t.shape(i);
  } else {
    os << "sparse dim=" << t.dim();
  }
  auto describe = [&os](const proto::OptimizerConfig& o, const proto::InitializerConfig& init) {
    os << o.kind() << "(lr=" << o.learning_rate() << ") init=" << init.kind();
    if (init.kind() != "zeros") os << "(" << init.scale() << ")";
  };
  if (!t.dense() && t.head().dim() > 0) {
    os << " head " << t.head().dim() << ": ";
    describe(t.head().optimizer(), t.head().initializer());
    os << ", rest:";
  }
  os << " ";
  describe(t.optimizer(), t.initializer());
  if (t.admission().min_count() > 1) os << " admit_after=" << t.admission().min_count();
  if (t.admission().probability() > 0 && t.admission().probability() < 1) {
    os << " admit_prob=" << t.admission().probability();
  }
  return os.str();
}

}  // namespace eddy
