// Parsing and validation of table definitions from the job configuration.
// Spec syntax (the --tables flag): tables separated by ';', each
//   name:key=value,key=value,...
// Keys: dim=N (sparse table, floats per key) or shape=AxBx... (dense tensor);
// opt=sgd|adagrad|adam|ftrl, lr, beta1, beta2, eps, l1, l2, acc (initial
// accumulator, adagrad/ftrl), ftrl_beta; init=zeros|uniform|normal, init_scale, seed.
// Sparse tables may give the first N floats of every row (e.g. a feature's
// first-order weight) their own optimizer and initializer: head=N, then any of
// the keys above prefixed with head_ (head_opt=adagrad,head_lr=0.05,head_init=zeros);
// the head starts with the row's settings. Feature admission (sparse):
// admit_after=N (an id gets a row after N pushes), admit_prob=p (or with
// probability p per push); see server/admission.h.
// Thread-safety: pure functions.
#ifndef EDDY_COMMON_TABLE_CONFIG_H_
#define EDDY_COMMON_TABLE_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy {

// Parses a --tables spec. Errors name the table and the offending key.
StatusOr<std::vector<proto::TableConfig>> ParseTableSpecs(std::string_view spec);

// Checks one table definition (dimensions, optimizer and initializer values).
Status ValidateTableConfig(const proto::TableConfig& table);

// Number of elements of a dense tensor (product of its shape).
uint64_t DenseElementCount(const proto::TableConfig& table);

// One-line description, e.g. "emb: sparse dim=16 adagrad(lr=0.05) init=normal(0.01)".
std::string DescribeTable(const proto::TableConfig& table);

}  // namespace eddy

#endif  // EDDY_COMMON_TABLE_CONFIG_H_
