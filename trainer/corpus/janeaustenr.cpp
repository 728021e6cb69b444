// The package's data are an R lazy-load database whose variables are character vectors, one element per
// line of the Project Gutenberg text. Novels missing from the known publication order (a future package
// version) are kept and go last, sorted by name.
#include "trainer/corpus/janeaustenr.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "trainer/corpus/r_lazyload.h"

namespace dytrain {
namespace {

const char* const kPublicationOrder[] = {"sensesensibility", "prideprejudice", "mansfieldpark",
                                         "emma",             "northangerabbey", "persuasion"};

int publication_rank(const std::string& name) {
  const auto* end = std::end(kPublicationOrder);
  return static_cast<int>(std::find(std::begin(kPublicationOrder), end, name) - std::begin(kPublicationOrder));
}

}  // namespace

std::vector<std::string> janeaustenr_files(const std::string& package_dir) {
  const std::string base = package_dir + "/data/Rdata";
  std::vector<std::string> files = {base + ".rdx", base + ".rdb"};
  for (const std::string& f : files) {
    if (!std::filesystem::is_regular_file(f)) {
      throw std::runtime_error(
          "Jane Austen data file " + f + " not found: install it with "
          "`apt-get install -y --no-install-recommends r-cran-janeaustenr` (or set the source's `path`)");
    }
  }
  return files;
}

std::vector<Document> read_janeaustenr(const std::string& package_dir) {
  janeaustenr_files(package_dir);
  const RLazyLoadDB db(package_dir + "/data/Rdata");
  std::vector<std::string> names = db.names();
  std::stable_sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    const int ra = publication_rank(a), rb = publication_rank(b);
    return ra != rb ? ra < rb : a < b;
  });
  std::vector<Document> docs;
  for (const std::string& name : names) {
    const RValue v = db.get(name);
    if (v.type != kRStrSxp) continue;  // the package holds only novels; skip anything else it may add
    Document doc{name, {}};
    for (const auto& line : v.strings) {
      doc.text += line.value_or("");
      doc.text += '\n';
    }
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace dytrain
