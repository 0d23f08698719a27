#include "common/table_config.h"

#include <gtest/gtest.h>

namespace eddy {
namespace {

// Expects `spec` to be rejected with a message containing `words`.
void ExpectRejected(const std::string& spec, const std::string& words) {
  auto tables = ParseTableSpecs(spec);
  ASSERT_FALSE(tables.ok()) << spec;
  EXPECT_EQ(tables.status().code(), StatusCode::kInvalidArgument) << spec;
  EXPECT_NE(tables.status().message().find(words), std::string::npos)
      << spec << " gave: " << tables.status().message();
}

TEST(TableConfigTest, ParsesSparseAndDenseTables) {
  auto tables = ParseTableSpecs(
      " emb : dim=16, opt=adam, lr=0.01, init=normal, init_scale=0.02, seed=5 ; w:shape=3x4x5");
  ASSERT_TRUE(tables.ok()) << tables.status();
  ASSERT_EQ(tables->size(), 2u);
  const proto::TableConfig& emb = (*tables)[0];
  EXPECT_EQ(emb.name(), "emb");
  EXPECT_FALSE(emb.dense());
  EXPECT_EQ(emb.dim(), 16u);
  EXPECT_EQ(emb.optimizer().kind(), "adam");
  EXPECT_FLOAT_EQ(emb.optimizer().learning_rate(), 0.01f);
  EXPECT_FLOAT_EQ(emb.optimizer().beta1(), 0.9f);
  EXPECT_FLOAT_EQ(emb.optimizer().beta2(), 0.999f);
  EXPECT_EQ(emb.initializer().kind(), "normal");
  EXPECT_FLOAT_EQ(emb.initializer().scale(), 0.02f);
  EXPECT_EQ(emb.initializer().seed(), 5u);
  const proto::TableConfig& w = (*tables)[1];
  EXPECT_TRUE(w.dense());
  EXPECT_EQ(w.dim(), 0u);
  ASSERT_EQ(w.shape_size(), 3);
  EXPECT_EQ(DenseElementCount(w), 60u);
  EXPECT_TRUE(ValidateTableConfig(emb).ok());
  EXPECT_TRUE(ValidateTableConfig(w).ok());
}

TEST(TableConfigTest, Defaults) {
  auto tables = ParseTableSpecs("e:dim=8");
  ASSERT_TRUE(tables.ok());
  const proto::TableConfig& t = tables->front();
  EXPECT_EQ(t.optimizer().kind(), "adagrad");
  EXPECT_FLOAT_EQ(t.optimizer().learning_rate(), 0.05f);
  EXPECT_FLOAT_EQ(t.optimizer().epsilon(), 1e-8f);
  EXPECT_EQ(t.optimizer().initial_accumulator(), 0.0f);
  EXPECT_EQ(t.optimizer().l1(), 0.0f);
  EXPECT_EQ(t.optimizer().l2(), 0.0f);
  EXPECT_EQ(t.initializer().kind(), "zeros");
  auto sgd = ParseTableSpecs("e:dim=8,opt=sgd");
  EXPECT_FLOAT_EQ(sgd->front().optimizer().learning_rate(), 0.01f);
  auto ftrl = ParseTableSpecs("e:dim=8,opt=ftrl");
  EXPECT_FLOAT_EQ(ftrl->front().optimizer().learning_rate(), 0.05f);
  EXPECT_FLOAT_EQ(ftrl->front().optimizer().ftrl_beta(), 1.0f);
}

TEST(TableConfigTest, OptimizerDefaultsDoNotOverrideExplicitKeys) {
  // opt= is applied first whatever its position.
  auto tables = ParseTableSpecs(
      "e:lr=0.5,eps=0.001,dim=4,opt=adagrad,acc=0.1;f:opt=ftrl,l1=1,l2=2,ftrl_beta=0.5,dim=2");
  ASSERT_TRUE(tables.ok()) << tables.status();
  EXPECT_FLOAT_EQ((*tables)[0].optimizer().learning_rate(), 0.5f);
  EXPECT_FLOAT_EQ((*tables)[0].optimizer().epsilon(), 0.001f);
  EXPECT_FLOAT_EQ((*tables)[0].optimizer().initial_accumulator(), 0.1f);
  EXPECT_FLOAT_EQ((*tables)[1].optimizer().l1(), 1.0f);
  EXPECT_FLOAT_EQ((*tables)[1].optimizer().l2(), 2.0f);
  EXPECT_FLOAT_EQ((*tables)[1].optimizer().ftrl_beta(), 0.5f);
}

TEST(TableConfigTest, RejectsBadSpecs) {
  ExpectRejected("e:dim=4,colour=red", "unknown key 'colour'");
  ExpectRejected("e:opt=sgd", "needs dim=N");
  ExpectRejected("e:dim=0", "needs dim=N");
  ExpectRejected("e:dim=4,shape=2x2", "not both");
  ExpectRejected("e:shape=2x2,dim=4", "not both");
  ExpectRejected("e:dim=abc", "'abc' is not a non-negative integer");
  ExpectRejected("e:dim=-3", "not a non-negative integer");
  ExpectRejected("e:dim=4,lr=fast", "'fast' is not a number");
  ExpectRejected("e:dim=4,lr=1e999", "not a number");
  ExpectRejected("e:dim=4,lr=0", "lr must be > 0");
  ExpectRejected("e:dim=4;e:dim=8", "'e' is defined twice");
  ExpectRejected("e:dim=4,opt=rmsprop", "unknown optimizer 'rmsprop'");
  ExpectRejected("e:dim=4,init=ones", "unknown initializer 'ones'");
  ExpectRejected("e:dim=4,init=normal,init_scale=-1", "init_scale must be >= 0");
  ExpectRejected("e:dim=4,l1=-1", "l1 and l2 must be >= 0");
  ExpectRejected("e:dim=4,opt=adam,beta1=1", "beta1, beta2 < 1");
  ExpectRejected("e:dim=4,opt=adagrad,l1=0.1", "l1 is only supported by opt=ftrl");
  ExpectRejected("e:dim=4,acc=-0.5", "acc must be >= 0");
  ExpectRejected("e:dim=100000", "at most 65536");
  ExpectRejected("e:shape=3x0", "zero dimension");
  ExpectRejected("e:shape=3xx4", "not a non-negative integer");
  ExpectRejected("e:shape=65536x65536x2", "larger than 2^32");
  ExpectRejected("e:dim", "not key=value");
  ExpectRejected(":dim=4", "has no name");
  ExpectRejected("", "no table defined");
  ExpectRejected(" ; ;", "no table defined");
}

TEST(TableConfigTest, ErrorsNameTheTable) {
  auto tables = ParseTableSpecs("good:dim=4;bad:dim=4,nope=1");
  ASSERT_FALSE(tables.ok());
  EXPECT_NE(tables.status().message().find("table 'bad'"), std::string::npos) << tables.status();
}

TEST(TableConfigTest, ValidateChecksHandBuiltConfigs) {
  proto::TableConfig t;
  EXPECT_FALSE(ValidateTableConfig(t).ok());  // no name
  t.set_name("t");
  t.set_dim(4);
  t.mutable_optimizer()->set_kind("sgd");
  t.mutable_optimizer()->set_learning_rate(0.1f);
  t.mutable_initializer()->set_kind("zeros");
  EXPECT_TRUE(ValidateTableConfig(t).ok());
  t.set_dense(true);
  EXPECT_FALSE(ValidateTableConfig(t).ok());  // dense without shape
}

TEST(TableConfigTest, DescribeTable) {
  auto tables =
      ParseTableSpecs("emb:dim=16,init=normal,init_scale=0.01;w:shape=4x5,opt=sgd,lr=0.1");
  ASSERT_TRUE(tables.ok());
  EXPECT_EQ(DescribeTable((*tables)[0]), "emb: sparse dim=16 adagrad(lr=0.05) init=normal(0.01)");
  EXPECT_EQ(DescribeTable((*tables)[1]), "w: dense shape=4x5 sgd(lr=0.1) init=zeros");
}

TEST(TableConfigTest, DenseElementCount) {
  proto::TableConfig t;
  EXPECT_EQ(DenseElementCount(t), 0u);
  t.add_shape(7);
  EXPECT_EQ(DenseElementCount(t), 7u);
  t.add_shape(1000000);
  EXPECT_EQ(DenseElementCount(t), 7000000u);
}

}  // namespace
}  // namespace eddy

namespace eddy {
namespace {

TEST(TableConfigTest, RowHeadStartsAsTheRowAndTakesItsOwnKeys) {
  auto tables = ParseTableSpecs(
      "e:dim=17,opt=adam,lr=0.002,init=normal,init_scale=0.01,seed=3,head=1,head_lr=0.2;"
      "f:head_init=zeros,head_opt=adagrad,dim=9,opt=adam,head=1,head_acc=0.5,init=normal");
  ASSERT_TRUE(tables.ok()) << tables.status();
  const proto::TableConfig& e = (*tables)[0];
  EXPECT_EQ(e.head().dim(), 1u);
  EXPECT_EQ(e.head().optimizer().kind(), "adam");  // inherited from the row
  EXPECT_FLOAT_EQ(e.head().optimizer().learning_rate(), 0.2f);
  EXPECT_FLOAT_EQ(e.optimizer().learning_rate(), 0.002f);
  EXPECT_EQ(e.head().initializer().kind(), "normal");
  EXPECT_EQ(e.head().initializer().seed(), 3u);
  // Key order does not matter: head_opt before opt= still gives the head AdaGrad.
  const proto::TableConfig& f = (*tables)[1];
  EXPECT_EQ(f.head().optimizer().kind(), "adagrad");
  EXPECT_FLOAT_EQ(f.head().optimizer().learning_rate(), 0.05f);
  EXPECT_FLOAT_EQ(f.head().optimizer().initial_accumulator(), 0.5f);
  EXPECT_EQ(f.head().initializer().kind(), "zeros");
  EXPECT_EQ(f.optimizer().kind(), "adam");
  EXPECT_NE(DescribeTable(f).find("head 1: adagrad"), std::string::npos) << DescribeTable(f);
  auto plain = ParseTableSpecs("g:dim=4,opt=adam");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)[0].head().dim(), 0u);
}

TEST(TableConfigTest, FeatureAdmission) {
  auto tables = ParseTableSpecs("e:dim=4,admit_after=3;f:dim=4,admit_prob=0.25");
  ASSERT_TRUE(tables.ok()) << tables.status();
  EXPECT_EQ((*tables)[0].admission().min_count(), 3u);
  EXPECT_FLOAT_EQ((*tables)[1].admission().probability(), 0.25f);
  EXPECT_NE(DescribeTable((*tables)[0]).find("admit_after=3"), std::string::npos);
  ExpectRejected("e:dim=4,admit_prob=1.5", "admit_prob must be in [0, 1]");
  ExpectRejected("e:shape=4,admit_after=2", "sparse tables only");
  ExpectRejected("e:dim=4,admit_after=70000", "at most 65535");
}

TEST(TableConfigTest, RejectsBadRowHeads) {
  ExpectRejected("e:dim=4,head=4", "must be smaller than dim=4");
  ExpectRejected("e:shape=4,head=1", "sparse tables only");
  ExpectRejected("e:dim=4,head=1,head_opt=nope", "(head): unknown optimizer 'nope'");
  ExpectRejected("e:dim=4,head=1,head_colour=red", "unknown key 'head_colour'");
  ExpectRejected("e:dim=4,head=1,head_lr=0", "(head): lr must be > 0");
}

}  // namespace
}  // namespace eddy
