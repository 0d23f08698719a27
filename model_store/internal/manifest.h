// Internal to model_store: manifest validation, shared by the writer (its
// errors are InvalidArgument) and the reader (which reports them as DataLoss),
// and the manifest's name, size limit and deterministic serialization.
// Thread-safety: pure functions.
#ifndef EDDY_MODEL_STORE_INTERNAL_MANIFEST_H_
#define EDDY_MODEL_STORE_INTERNAL_MANIFEST_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "model_store/format.h"

namespace eddy::model_store::internal {

inline constexpr char kManifestName[] = "manifest.pb";
inline constexpr uint64_t kMaxManifestBytes = 64ull << 20;

// A non-empty relative path without empty, "." or ".." components.
bool SafeRelativePath(std::string_view p);

// Elements of a dense table, or 0 if its shape is invalid.
uint64_t DenseElements(const TableSchema& t);

// Checks a manifest's consistency: InvalidArgument naming what is wrong;
// FailedPrecondition when it was written by a newer format.
Status ValidateManifest(const proto::Manifest& m);

// The manifest's bytes, with maps in a deterministic order.
StatusOr<std::string> SerializeDeterministic(const proto::Manifest& m);

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_MANIFEST_H_
