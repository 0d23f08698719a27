// Training/serving parity: a replica's model built from a version answers
// exactly as the trainer's forward pass did on the same rows. The real
// eddy_train trains, freezes the model (its last version is then the model
// that scores the rest of the stream) and reports the progressive metrics of
// that tail; the serving library predicts the same tail from the version.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "serving/loaded_model.h"
#include "tests/worker/train_job_fixture.h"
#include "worker/metrics/metrics.h"

namespace eddy {
namespace {

// The value after `key` in the line that starts with `line_start`.
double FieldOf(const std::string& out, const std::string& line_start, const std::string& key) {
  size_t at = out.find(line_start);
  if (at == std::string::npos) return -1;
  at = out.find(key, at);
  return at == std::string::npos ? -1 : std::atof(out.c_str() + at + key.size());
}

class TrainServeParityTest : public TrainJobTest {};

TEST_F(TrainServeParityTest, AReplicaScoresRowsExactlyAsTheTrainerDid) {
  constexpr int kRows = 6000, kFrozenAt = 4096;  // a whole number of 256-row batches
  const std::string data = Generate("rows.tsv", kRows);
  const std::string models = (dir_ / "models").string();
  for (const char* model : {"deepfm", "fm"}) {
    SCOPED_TRACE(model);
    fs::remove_all(models);
    std::vector<std::string> flags = {"--local", "--data=" + data, "--model_dir=" + models,
                                      "--freeze_after_rows=" + std::to_string(kFrozenAt),
                                      "--eval_from_rows=" + std::to_string(kFrozenAt),
                                      // Each batch pulls after the previous push.
                                      "--prefetch=false"};
    flags.insert(flags.end(), kSmallModel.begin(), kSmallModel.end());
    flags.push_back(std::string("--model=") + model);
    auto [code, out] = Train(flags);
    ASSERT_EQ(code, 0) << out;
    const std::string tail = "evaluated tail (--eval_from_rows): ";
    const double train_logloss = FieldOf(out, tail, "logloss=");
    const double train_auc = FieldOf(out, tail, "auc=");
    ASSERT_GT(train_logloss, 0) << out;

    auto versions = model_store::ListVersions(models);
    ASSERT_TRUE(versions.ok() && !versions->empty()) << versions.status();
    auto materialized = model_store::Materialize(models, versions->back());
    ASSERT_TRUE(materialized.ok()) << materialized.status();
    auto loaded = serving::LoadedModel::Create(std::move(materialized).value());
    ASSERT_TRUE(loaded.ok()) << loaded.status();

    std::ifstream in(data);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), static_cast<size_t>(kRows));
    std::vector<std::string_view> rows(lines.begin() + kFrozenAt, lines.end());
    serving::Predictor predictor;
    auto probs = predictor.Predict(**loaded, rows, /*no_label=*/false);
    ASSERT_TRUE(probs.ok()) << probs.status();
    worker::BinaryMetrics metrics;
    for (size_t i = 0; i < rows.size(); ++i) metrics.Add((*probs)[i], rows[i][0] == '1' ? 1 : 0);
    ASSERT_EQ(metrics.count(), static_cast<uint64_t>(kRows - kFrozenAt));
    // The trainer prints 5 decimals.
    EXPECT_NEAR(metrics.LogLoss(), train_logloss, 2e-5);
    EXPECT_NEAR(metrics.Auc(), train_auc, 2e-5);
  }
}

}  // namespace
}  // namespace eddy
