// eddy_models: inspects and manages the model versions under one root directory
// (docs/model_format.md): list, show, verify, pin, unpin, delete, export, prune,
// snapshot. `eddy_models --help` documents every command and flag. The commands
// live in model_store/models_cli.h; this file turns flags into their options.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "model_store/models_cli.h"

// gflags owns a built-in --version flag, so the version number is the flag
// --model_version; main() rewrites --version=N to it before parsing.
DEFINE_string(model_dir, "", "The model root directory (required by every command).");
DEFINE_uint64(model_version, 0,
              "The version a command acts on (show, verify, pin, unpin, delete, export), "
              "given as --version=N.");
DEFINE_bool(json, false, "list, show: print JSON instead of a table.");
DEFINE_string(to, "", "export: the destination root directory (created if absent).");
DEFINE_string(encoding, "float32",
              "export: how sparse values are stored: float32, fp16 or int8 (per-row scale). "
              "Dense tensors stay float32.");
DEFINE_bool(delta, false,
            "export: write a serving delta from the training delta's own files; its parent "
            "must already be exported to --to.");
DEFINE_int32(threads, 2, "export: shards materialized and written at once.");
DEFINE_int32(keep_full, 0, "prune: the number of newest full versions to keep (>= 1).");
DEFINE_string(scheduler, "",
              "snapshot: the running job's scheduler endpoint (tcp://host:port; its log names "
              "it).");
DEFINE_int32(timeout_ms, 10000, "snapshot: how long to wait for the scheduler's answer.");
DEFINE_bool(materialize, false,
            "verify: also decode every file and apply the chain (catches what checksums "
            "cannot, e.g. a manifest that disagrees with a file header).");

namespace {

void PrintUsage() {
  std::string flags;
  std::vector<gflags::CommandLineFlagInfo> all;
  gflags::GetAllFlags(&all);
  for (const auto& f : all) {
    if (f.filename != __FILE__) continue;
    std::string name = f.name == "model_version" ? "version" : f.name;
    flags += "  --" + name + " (" + f.type + ", default " +
             (f.default_value.empty() ? "none" : f.default_value) + ")\n      " + f.description +
             "\n";
  }
  std::printf("%s%s%s", std::string(eddy::model_store::ModelsUsageHead()).c_str(), flags.c_str(),
              std::string(eddy::model_store::ModelsUsageTail()).c_str());
}

// gflags reserves --version; accept it as the version number (--model_version).
void RewriteVersionFlag(int argc, char** argv, std::vector<std::string>* storage) {
  storage->reserve(argc);
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") break;
    for (std::string_view prefix : {"--version", "-version"}) {
      if (a.substr(0, prefix.size()) == prefix &&
          (a.size() == prefix.size() || a[prefix.size()] == '=')) {
        storage->push_back("--model_version" + std::string(a.substr(prefix.size())));
        argv[i] = storage->back().data();
        break;
      }
    }
  }
}

eddy::model_store::ModelsCliOptions OptionsFromFlags() {
  eddy::model_store::ModelsCliOptions o;
  o.model_dir = FLAGS_model_dir;
  o.version = FLAGS_model_version;
  o.json = FLAGS_json;
  o.to = FLAGS_to;
  o.encoding = FLAGS_encoding;
  o.delta = FLAGS_delta;
  o.threads = FLAGS_threads;
  o.keep_full = FLAGS_keep_full;
  o.scheduler = FLAGS_scheduler;
  o.timeout_ms = FLAGS_timeout_ms;
  o.materialize = FLAGS_materialize;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> rewritten;
  RewriteVersionFlag(argc, argv, &rewritten);
  gflags::SetUsageMessage("eddy_models <command> --model_dir=DIR [flags]; see --help");
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, /*remove_flags=*/true);
  std::string help;
  if (gflags::GetCommandLineOption("help", &help) && help == "true") {
    PrintUsage();
    return 0;
  }
  gflags::HandleCommandLineHelpFlags();  // --helpfull and friends
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc < 2 || std::string_view(argv[1]) == "help") {
    if (argc < 2) {
      std::fprintf(stderr,
                   "eddy_models: error: no command given (list, show, verify, pin, unpin, "
                   "delete, export, prune); eddy_models --help explains them\n");
      return eddy::model_store::kModelsExitUsage;
    }
    PrintUsage();
    return 0;
  }
  if (argc > 2) {
    std::fprintf(stderr,
                 "eddy_models: error: unexpected argument '%s' (one command at a time; "
                 "flags are --name=value)\n",
                 argv[2]);
    return eddy::model_store::kModelsExitUsage;
  }
  const std::string command = argv[1];
  if (auto failure = eddy::model_store::RunModelsCommand(command, OptionsFromFlags())) {
    std::fprintf(stderr, "eddy_models %s: error: %s\n", command.c_str(), failure->message.c_str());
    if (failure->code == eddy::model_store::kModelsExitUsage) {
      std::fprintf(stderr, "(eddy_models --help lists commands and flags)\n");
    }
    return failure->code;
  }
  return 0;
}
