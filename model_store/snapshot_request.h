// The request/reply of `eddy_models snapshot`: asks a running job's scheduler
// for a model version now (SNAPSHOT_NOW on its control socket, through
// common/rpc_client.h).
// Thread-safety: thread-safe (each call has its own ZeroMQ context).
#ifndef EDDY_MODEL_STORE_SNAPSHOT_REQUEST_H_
#define EDDY_MODEL_STORE_SNAPSHOT_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace eddy::model_store {

// Sends SNAPSHOT_NOW to `endpoint` and waits up to
// `timeout` for the reply. Returns the version the scheduler will commit.
// Errors: InvalidArgument (an endpoint ZeroMQ refuses, "<endpoint>: <why>"),
// DeadlineExceeded (no answer in time), FailedPrecondition (the scheduler's
// refusal), transport errors.
StatusOr<int64_t> RequestSnapshot(const std::string& endpoint, std::chrono::milliseconds timeout);

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_SNAPSHOT_REQUEST_H_
