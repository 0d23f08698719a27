// Internal to the eddy_models library: what models_cli.cc (dispatch and the
// commands that change a root) shares with models_cli_inspect.cc (list, show,
// verify). Thread-safety: thread-compatible.
#ifndef EDDY_MODEL_STORE_INTERNAL_MODELS_CLI_COMMANDS_H_
#define EDDY_MODEL_STORE_INTERNAL_MODELS_CLI_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "model_store/models_cli.h"

namespace eddy::model_store::internal {

// nullopt on success.
using CliResult = std::optional<CliFailure>;

inline CliFailure UsageError(std::string m) { return {kModelsExitUsage, std::move(m)}; }
inline CliFailure CommandError(const Status& s) { return {kModelsExitError, s.message()}; }

// The committed versions, or an error that says how to fix --model_dir.
StatusOr<std::vector<uint64_t>> Versions(const std::string& root);

// Checks that --version names a committed version.
CliResult RequireVersion(const ModelsCliOptions& o, const std::string& command,
                         const std::string& root);

// The read-only commands (models_cli_inspect.cc).
CliResult List(const ModelsCliOptions& o, const std::string& root);
CliResult Show(const ModelsCliOptions& o, const std::string& root);
CliResult Verify(const ModelsCliOptions& o, const std::string& root);

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_MODELS_CLI_COMMANDS_H_
