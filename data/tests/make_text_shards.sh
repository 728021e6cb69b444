#!/bin/sh
# Regenerates the byte-level test shards text_bytes_train.bin and text_bytes_val.bin in this folder.
#
# Source: "Pride and Prejudice" by Jane Austen (1813, public domain), as shipped by the R package janeaustenr
# (Debian: apt-get install r-cran-janeaustenr), whose text comes from Project Gutenberg. The novel's lines are
# joined with "\n"; train is its first 190000 bytes, val the 30000 bytes after them. Tokenization is byte-level:
# each UTF-8 byte is one token (vocab 256; the text is plain ASCII, so every id is below 128). The shards use the
# llm.c uint16 format (magic 20240520, version 1), written to a temporary name and then renamed.
#
# Usage: data/tests/make_text_shards.sh [OUT_DIR]   (default: the folder holding this script)
set -eu
out=${1:-$(dirname "$0")}
Rscript --vanilla - "$out" <<'RSCRIPT'
out <- commandArgs(trailingOnly = TRUE)[1]
text <- paste(janeaustenr::prideprejudice, collapse = "\n")
bytes <- as.integer(charToRaw(enc2utf8(text)))
write_shard <- function(path, tokens) {
  tmp <- paste0(path, ".tmp")
  con <- file(tmp, "wb")
  header <- integer(256)
  header[1:3] <- c(20240520L, 1L, length(tokens))
  writeBin(header, con, size = 4, endian = "little")
  writeBin(tokens, con, size = 2, endian = "little")
  close(con)
  stopifnot(file.rename(tmp, path))
  cat(sprintf("%s: %d tokens\n", path, length(tokens)))
}
n_train <- 190000L
n_val <- 30000L
stopifnot(length(bytes) >= n_train + n_val)
write_shard(file.path(out, "text_bytes_train.bin"), bytes[1:n_train])
write_shard(file.path(out, "text_bytes_val.bin"), bytes[(n_train + 1):(n_train + n_val)])
RSCRIPT
