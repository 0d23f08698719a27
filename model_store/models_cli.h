// The eddy_models commands as a library: list, show, verify, pin, unpin,
// delete, export, prune (on a model root, docs/model_format.md) and snapshot
// (asks a running job's scheduler). tools/eddy_models.cc parses flags into
// ModelsCliOptions and calls RunModelsCommand; results are printed to stdout.
// Thread-safety: thread-compatible (commands write to stdout).
#ifndef EDDY_MODEL_STORE_MODELS_CLI_H_
#define EDDY_MODEL_STORE_MODELS_CLI_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eddy::model_store {

// Exit codes: a command failed (the message says why and what to do), or it
// was called wrongly.
inline constexpr int kModelsExitError = 1;
inline constexpr int kModelsExitUsage = 2;

// The flags of eddy_models (its --help describes each).
struct ModelsCliOptions {
  std::string model_dir;             // required by every command but snapshot
  uint64_t version = 0;              // --version: show, verify, pin, unpin, delete, export
  bool json = false;                 // list, show
  std::string to;                    // export: destination root
  std::string encoding = "float32";  // export: float32, fp16 or int8
  bool delta = false;                // export: a serving delta
  int threads = 2;                   // export
  int keep_full = 0;                 // prune
  std::string scheduler;             // snapshot: the scheduler's endpoint
  int timeout_ms = 10000;            // snapshot
  bool materialize = false;          // verify: also decode and apply the chain
};

// A command's failure: the exit code and what to print.
struct CliFailure {
  int code;
  std::string message;
};

// Runs `command` ("list", "show", ...; not "help"). nullopt on success; else
// the failure (kModelsExitUsage for a usage error such as an unknown command
// or a missing flag).
std::optional<CliFailure> RunModelsCommand(const std::string& command,
                                           const ModelsCliOptions& options);

// The --help text: the head (commands) goes before the flag list, the tail
// (exit status, examples) after it.
std::string_view ModelsUsageHead();
std::string_view ModelsUsageTail();

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_MODELS_CLI_H_
