// The validation split by name and by seeded fraction, and its errors.
#include <gtest/gtest.h>

#include <set>

#include "trainer/corpus/split.h"

namespace dytrain {
namespace {

std::vector<Document> make_docs(int n) {
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) docs.push_back({"doc" + std::to_string(i), "text " + std::to_string(i)});
  return docs;
}

std::set<std::string> names_of(const std::vector<Document>& docs) {
  std::set<std::string> s;
  for (const auto& d : docs) s.insert(d.name);
  return s;
}

TEST(Split, ByNameMovesExactlyThoseDocuments) {
  std::vector<Document> docs = {{"emma", "e"}, {"persuasion", "p"}, {"prideprejudice", "pp"}};
  ValidationSpec spec;
  spec.names = {"persuasion"};
  const std::vector<Document> val = split_validation(&docs, spec, "r.yaml");
  ASSERT_EQ(val.size(), 1u);
  EXPECT_EQ(val[0].name, "persuasion");
  EXPECT_EQ(val[0].text, "p");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].name, "emma");
  EXPECT_EQ(docs[1].name, "prideprejudice");
}

TEST(Split, FractionIsSeededAndIndependentOfOrder) {
  ValidationSpec spec;
  spec.fraction = 0.1;
  spec.seed = 7;
  std::vector<Document> a = make_docs(200);
  const std::vector<Document> val_a = split_validation(&a, spec, "r.yaml");
  EXPECT_EQ(val_a.size(), 20u);
  EXPECT_EQ(a.size(), 180u);

  std::vector<Document> b = make_docs(200);
  std::reverse(b.begin(), b.end());
  const std::vector<Document> val_b = split_validation(&b, spec, "r.yaml");
  EXPECT_EQ(names_of(val_a), names_of(val_b));

  spec.seed = 8;
  std::vector<Document> c = make_docs(200);
  EXPECT_NE(names_of(split_validation(&c, spec, "r.yaml")), names_of(val_a));
}

TEST(Split, UnknownNameNamesRecipeAndDocument) {
  std::vector<Document> docs = make_docs(3);
  ValidationSpec spec;
  spec.names = {"nosuchdoc"};
  try {
    split_validation(&docs, spec, "configs/data/x.yaml");
    FAIL() << "an unknown validation name must throw";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("configs/data/x.yaml"), std::string::npos) << msg;
    EXPECT_NE(msg.find("nosuchdoc"), std::string::npos) << msg;
  }
}

TEST(Split, HoldingOutEverythingIsAnError) {
  std::vector<Document> docs = {{"only", "text"}};
  ValidationSpec spec;
  spec.names = {"only"};
  EXPECT_THROW(split_validation(&docs, spec, "r.yaml"), std::runtime_error);
}

}  // namespace
}  // namespace dytrain
