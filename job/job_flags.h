// The command-line flags every Eddy binary shares (role, scheduler address,
// cluster size, tables, timeouts) and their conversion to JobOptions.
// Only main()-level code includes this; libraries take JobOptions.
#ifndef EDDY_JOB_JOB_FLAGS_H_
#define EDDY_JOB_JOB_FLAGS_H_

#include "common/status.h"
#include "job/launcher.h"

namespace eddy::job {

// Parses the command line like gflags::ParseCommandLineFlags, except that
// --help lists only Eddy's own flags (--helpfull lists every library's too).
void ParseFlags(int* argc, char*** argv);

// Builds JobOptions from the parsed flags; errors say which flag to fix.
StatusOr<JobOptions> JobOptionsFromFlags();

}  // namespace eddy::job

#endif  // EDDY_JOB_JOB_FLAGS_H_
