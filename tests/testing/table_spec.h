// TableSpec: one table definition from a --tables style spec, for tests.
#ifndef EDDY_TESTS_TESTING_TABLE_SPEC_H_
#define EDDY_TESTS_TESTING_TABLE_SPEC_H_

#include <gtest/gtest.h>

#include <string>

#include "common/table_config.h"

namespace eddy::testing {

// The first table of `spec` (e.g. "emb:dim=4,opt=sgd"); a parse error fails the test.
inline proto::TableConfig TableSpec(const std::string& spec) {
  auto tables = ParseTableSpecs(spec);
  EXPECT_TRUE(tables.ok()) << tables.status();
  return tables.ok() ? tables->front() : proto::TableConfig();
}

}  // namespace eddy::testing

#endif  // EDDY_TESTS_TESTING_TABLE_SPEC_H_
