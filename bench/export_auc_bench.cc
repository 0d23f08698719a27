// export_auc_bench: what a serving export costs in quality. Exports one training
// version as a serving version in float32, fp16 and int8 (no optimizer state),
// scores the same held-out rows with each and reports bytes and AUC / logloss
// against the training version itself.
//   build/bin/export_auc_bench --model_dir=/tmp/m --data=test.tsv [--model_version=N]
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "model_store/materialize.h"
#include "model_store/serving_export.h"
#include "model_store/version_dir.h"
#include "serving/loaded_model.h"
#include "worker/metrics/metrics.h"

DEFINE_string(model_dir, "", "Training model root (eddy_train --model_dir).");
DEFINE_uint64(model_version, 0, "Version to export (0: the newest).");
DEFINE_string(data, "", "Held-out rows in the model's text format (with labels).");
DEFINE_uint64(max_rows, 200000, "Rows of --data scored.");

namespace eddy {
namespace {

namespace fs = std::filesystem;

struct Scored {
  double auc = 0, logloss = 0;
  uint64_t bytes = 0;
};

StatusOr<Scored> Score(const std::string& root, uint64_t version,
                       const std::vector<std::string>& rows, const std::vector<float>& labels) {
  ASSIGN_OR_RETURN(model_store::MaterializedModel m, model_store::Materialize(root, version));
  Scored s;
  // Bytes of the whole chain (a full version and the deltas after it).
  for (uint64_t v : m.chain) {
    ASSIGN_OR_RETURN(model_store::VersionReader r,
                     model_store::VersionReader::Open(root + "/" + model_store::VersionDirName(v)));
    for (const auto& f : r.manifest().files()) s.bytes += f.bytes();
  }
  ASSIGN_OR_RETURN(auto model, serving::LoadedModel::Create(m));
  serving::Predictor predictor;
  worker::BinaryMetrics metrics;
  constexpr size_t kBatch = 1024;
  for (size_t i = 0; i < rows.size(); i += kBatch) {
    std::vector<std::string_view> batch(rows.begin() + i,
                                        rows.begin() + std::min(rows.size(), i + kBatch));
    ASSIGN_OR_RETURN(std::vector<float> p, predictor.Predict(*model, batch, false));
    for (size_t j = 0; j < p.size(); ++j) metrics.Add(p[j], labels[i + j]);
  }
  s.auc = metrics.Auc();
  s.logloss = metrics.LogLoss();
  return s;
}

int Main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_model_dir.empty() || FLAGS_data.empty()) {
    LOG(ERROR) << "needs --model_dir and --data";
    return 2;
  }
  uint64_t version = FLAGS_model_version;
  if (version == 0) {
    auto v = model_store::ListVersions(FLAGS_model_dir);
    if (!v.ok() || v->empty()) {
      LOG(ERROR) << "no version under " << FLAGS_model_dir;
      return 1;
    }
    version = v->back();
  }
  std::vector<std::string> rows;
  std::vector<float> labels;
  std::ifstream in(FLAGS_data);
  std::string line;
  while (rows.size() < FLAGS_max_rows && std::getline(in, line)) {
    labels.push_back(line.empty() || line[0] == '0' ? 0.0f : 1.0f);
    rows.push_back(line);
  }
  char tmpl[] = "/tmp/eddy_export_auc_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  auto base = Score(FLAGS_model_dir, version, rows, labels);
  CHECK(base.ok()) << base.status();
  std::printf("# export_auc_bench --model_dir=%s --version=%llu --data=%s (%zu rows)\n",
              FLAGS_model_dir.c_str(), static_cast<unsigned long long>(version), FLAGS_data.c_str(),
              rows.size());
  std::printf(
      "| version | bytes | AUC | logloss | AUC change |\n| --- | --- | --- | --- | --- |\n");
  std::printf("| training chain (float32 + optimizer state) | %.1f MB | %.5f | %.5f | |\n",
              base->bytes / 1e6, base->auc, base->logloss);
  const std::pair<const char*, model_store::Encoding> encodings[] = {
      {"serving float32", proto::Manifest::ENCODING_FLOAT32},
      {"serving fp16", proto::Manifest::ENCODING_FLOAT16},
      {"serving int8 + row scale", proto::Manifest::ENCODING_INT8_ROW_SCALE}};
  int i = 0;
  for (const auto& [name, encoding] : encodings) {
    const std::string dst = dir + "/" + std::to_string(i++);
    Status s = model_store::ExportForServing(FLAGS_model_dir, version, dst, encoding);
    CHECK(s.ok()) << s;
    auto scored = Score(dst, version, rows, labels);
    CHECK(scored.ok()) << scored.status();
    std::printf("| %s | %.1f MB | %.5f | %.5f | %+.5f |\n", name, scored->bytes / 1e6, scored->auc,
                scored->logloss, scored->auc - base->auc);
  }
  fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  return eddy::Main(argc, argv);
}
