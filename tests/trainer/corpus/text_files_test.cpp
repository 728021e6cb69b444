// Glob expansion with `**` and file reading with transparent gzip.
#include <gtest/gtest.h>
#include <zlib.h>

#include "tests/common/temp_dir.h"
#include "trainer/corpus/text_files.h"

namespace dytrain {
namespace {

using testing::TempDir;

TEST(Glob, DoubleStarMatchesAtAnyDepthAndSorts) {
  TempDir dir;
  dir.write("docs/b.rst", "b");
  dir.write("docs/a.rst", "a");
  dir.write("docs/sub/deeper/c.rst", "c");
  dir.write("docs/sub/skip.txt", "x");
  const std::vector<std::string> files = expand_glob(dir.file("docs/**/*.rst"));
  const std::vector<std::string> expected = {dir.file("docs/a.rst"), dir.file("docs/b.rst"), dir.file("docs/sub/deeper/c.rst")};
  EXPECT_EQ(files, expected);
  EXPECT_EQ(expand_glob(dir.file("docs/*.rst")), (std::vector<std::string>{dir.file("docs/a.rst"), dir.file("docs/b.rst")}));
  EXPECT_TRUE(expand_glob(dir.file("nothing/**/*.rst")).empty());
  EXPECT_TRUE(expand_glob(dir.file("docs/*.md")).empty());
}

TEST(ReadFile, GzipIsDecompressed) {
  TempDir dir;
  const std::string path = dir.file("t.txt.gz");
  const std::string text = "compressed line one\nline two\n";
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(f);
  EXPECT_EQ(read_file_bytes(path), text);
  EXPECT_EQ(read_file_bytes(dir.write("plain.txt", "plain")), "plain");
}

TEST(ReadFile, MissingFileNamesIt) {
  try {
    read_file_bytes("/nonexistent/file.txt");
    FAIL() << "a missing file must throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/file.txt"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain
