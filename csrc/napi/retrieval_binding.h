// The retrieval module's JS surface (lib/retrieval/native.ts wraps it): the analyzer, the index
// writer and the index reader (csrc/retrieval/). Building and searching run off the JS thread and
// settle promises; an index being searched stays mapped until its last search ends.
#pragma once
#include <napi.h>

namespace jamba::napi {

// { installTables, analyze, standardTokens, porterStem, IndexWriter, openIndex } — the IndexReader class is
// reached through openIndex and IndexWriter.finish.
Napi::Object retrieval_exports(Napi::Env env);

}  // namespace jamba::napi
