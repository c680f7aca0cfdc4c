#include "retrieval_binding.h"

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/thread_pool.h"
#include "../retrieval/bm25_search.h"
#include "../retrieval/index_reader.h"
#include "../retrieval/index_writer.h"
#include "../retrieval/porter_stem.h"
#include "../retrieval/text_analyzer.h"
#include "../retrieval/wtf8.h"
#include "js_convert.h"
#include "model_binding.h"
#include "promise_worker.h"

namespace jamba::napi {

namespace {

using retrieval::AnalyzerKind;
using retrieval::IndexReader;
using retrieval::IndexWriter;

template <typename F>
auto native_call(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw make_error(env, e.kind, e.what());
  }
}

template <typename A>
A typed(const Napi::Value& v, napi_typedarray_type type, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) throw make_error(v.Env(), "invalid_argument", what + " has the wrong array type");
  return v.As<A>();
}

template <typename T, typename A>
std::vector<T> vec(const Napi::Object& o, const char* key, napi_typedarray_type type) {
  A a = typed<A>(o.Get(key), type, std::string("tables.") + key);
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

AnalyzerKind analyzer_kind(const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "english") return AnalyzerKind::English;
  if (s == "standard") return AnalyzerKind::Standard;
  throw make_error(v.Env(), "invalid_argument", "analyzer must be 'english' or 'standard'");
}

std::u16string js_string(const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) throw make_error(v.Env(), "invalid_argument", what + " must be a string");
  return v.As<Napi::String>().Utf16Value();
}

Napi::String to_js(Napi::Env env, const std::u16string& s) { return Napi::String::New(env, s.data(), s.size()); }

// An optional Int32Array whose first element JS sets to abort; kept alive by `keep`.
const int32_t* abort_flag(const Napi::Value& v, Napi::ObjectReference& keep) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  auto a = typed<Napi::Int32Array>(v, napi_int32_array, "abort");
  if (a.ElementLength() < 1) throw make_error(v.Env(), "invalid_argument", "abort must not be empty");
  keep = Napi::Persistent(a.As<Napi::Object>());
  return a.Data();
}

Napi::Value InstallTables(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw make_error(env, "invalid_argument", "tables must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  retrieval::TokenizerTables t;
  t.classes = int(get_int(o, "classes"));
  t.start = int(get_int(o, "start"));
  t.trans = vec<int16_t, Napi::Int16Array>(o, "trans", napi_int16_array);
  t.accepting = vec<uint8_t, Napi::Uint8Array>(o, "accepting", napi_uint8_array);
  t.emits = vec<int8_t, Napi::Int8Array>(o, "emits", napi_int8_array);
  t.cmap = vec<int32_t, Napi::Int32Array>(o, "cmap", napi_int32_array);
  t.lower = vec<int32_t, Napi::Int32Array>(o, "lower", napi_int32_array);
  if (!o.Get("stopWords").IsArray()) throw make_error(env, "invalid_argument", "tables.stopWords must be an array of strings");
  Napi::Array stop = o.Get("stopWords").As<Napi::Array>();
  for (uint32_t i = 0; i < stop.Length(); ++i) t.stop_words.push_back(js_string(stop.Get(i), "tables.stopWords[" + std::to_string(i) + "]"));
  native_call(env, [&] { retrieval::install_tokenizer_tables(t); });
  return env.Undefined();
}

Napi::Value Analyze(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::u16string text = js_string(info[0], "text");
  const AnalyzerKind kind = analyzer_kind(info[1]);
  std::string terms;
  std::vector<uint32_t> ends;
  native_call(env, [&] { retrieval::analyze(text.data(), text.size(), kind, terms, ends); });
  Napi::Array out = Napi::Array::New(env, ends.size());
  for (size_t i = 0; i < ends.size(); ++i) {
    const uint32_t b = i ? ends[i - 1] : 0;
    std::u16string s;
    retrieval::decode_wtf8(reinterpret_cast<const uint8_t*>(terms.data()) + b, ends[i] - b, s);
    out.Set(uint32_t(i), to_js(env, s));
  }
  return out;
}

Napi::Value StandardTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::u16string text = js_string(info[0], "text");
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  native_call(env, [&] { retrieval::standard_tokens(text.data(), text.size(), spans); });
  Napi::Array out = Napi::Array::New(env, spans.size());
  for (size_t i = 0; i < spans.size(); ++i) out.Set(uint32_t(i), Napi::String::New(env, text.data() + spans[i].first, spans[i].second - spans[i].first));
  return out;
}

Napi::Value PorterStem(const Napi::CallbackInfo& info) {
  std::u16string word = js_string(info[0], "word");
  retrieval::porter_stem(word);
  return to_js(info.Env(), word);
}

// ---- the reader ----

class NativeIndexReader : public Napi::ObjectWrap<NativeIndexReader> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeIndexReader",
                       {InstanceMethod("info", &NativeIndexReader::Info), InstanceMethod("search", &NativeIndexReader::Search),
                        InstanceMethod("passage", &NativeIndexReader::Passage), InstanceMethod("writeTo", &NativeIndexReader::WriteTo),
                        InstanceMethod("verify", &NativeIndexReader::Verify),
                        InstanceMethod("close", &NativeIndexReader::Close)});
  }
  explicit NativeIndexReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeIndexReader>(info) {
    if (!info[0].IsExternal()) throw make_error(info.Env(), "invalid_argument", "an index reader is made by openIndex or IndexWriter.finish");
    reader_ = *info[0].As<Napi::External<std::shared_ptr<const IndexReader>>>().Data();
  }
  static Napi::Object New(Napi::Env env, std::shared_ptr<const IndexReader> r) {
    return env.GetInstanceData<AddonData>()->index_reader_ctor.New({Napi::External<std::shared_ptr<const IndexReader>>::New(env, &r)});
  }

 private:
  std::shared_ptr<const IndexReader> reader(Napi::Env env) {
    if (!reader_) throw make_error(env, "disposed", "the index has been closed");
    return reader_;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto r = reader(env);
    const auto& h = r->header();
    Napi::Object o = Napi::Object::New(env);
    o.Set("passages", double(h.passages));
    o.Set("docCount", double(h.doc_count));
    o.Set("sumLength", double(h.sum_length));
    o.Set("terms", double(h.terms));
    o.Set("k1", h.k1);
    o.Set("b", h.b);
    o.Set("analyzer", h.analyzer == uint32_t(AnalyzerKind::English) ? "english" : "standard");
    o.Set("luceneNorms", r->lucene_norms());
    o.Set("meta", std::string(r->meta()));
    o.Set("bytes", double(r->bytes()));
    return o;
  }

  static Napi::Object passage_to_js(Napi::Env env, const retrieval::StoredPassage& p) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", to_js(env, p.id));
    if (p.has_title) o.Set("title", to_js(env, p.title));
    o.Set("text", to_js(env, p.text));
    o.Set("source", to_js(env, p.source));
    return o;
  }

  Napi::Value Passage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto r = reader(env);
    if (!info[0].IsNumber()) throw make_error(env, "invalid_argument", "doc must be a number");
    const double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d < double(r->header().passages)) || d != double(uint32_t(d))) throw make_error(env, "invalid_argument", "doc is not a passage number");
    return passage_to_js(env, native_call(env, [&] { return r->passage(uint32_t(d)); }));
  }

  // search(queries: string[], k, passages: boolean, abort?) → Promise<Array<{ docs, scores, passages? }>>
  class SearchWorker : public PromiseWorker {
   public:
    SearchWorker(Napi::Env env, std::shared_ptr<const IndexReader> r) : PromiseWorker(env), r_(std::move(r)) {}
    std::vector<std::u16string> queries;
    size_t k = 10;
    bool with_passages = false;
    const int32_t* abort = nullptr;
    Napi::ObjectReference keep;

   protected:
    void Work() override {
      hits_.resize(queries.size());
      if (with_passages) passages_.resize(queries.size());
      // An exception must not leave a pool thread (it would end the process): the first is kept
      // and rethrown here, and the other queries stop.
      std::atomic<bool> stopped{false};
      std::exception_ptr failed;
      std::mutex m;
      ThreadPool::instance().parallel_for(int64_t(queries.size()), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e && !stopped; ++i) {
          try {
            if (abort && __atomic_load_n(abort, __ATOMIC_RELAXED)) fail("aborted", "the search was aborted");
            const auto& q = queries[size_t(i)];
            hits_[size_t(i)] = retrieval::bm25_top_k(*r_, retrieval::query_terms(*r_, q.data(), q.size()), k);
            if (with_passages)
              for (const auto& h : hits_[size_t(i)]) passages_[size_t(i)].push_back(r_->passage(h.doc));
          } catch (...) {
            std::lock_guard<std::mutex> lk(m);
            if (!stopped.exchange(true)) failed = std::current_exception();
          }
        }
      });
      if (failed) std::rethrow_exception(failed);
    }
    void OnOK() override {
      Napi::Env env = Env();
      Napi::Array out = Napi::Array::New(env, hits_.size());
      for (size_t i = 0; i < hits_.size(); ++i) {
        Napi::Object o = Napi::Object::New(env);
        Napi::Uint32Array docs = Napi::Uint32Array::New(env, hits_[i].size());
        Napi::Float32Array scores = Napi::Float32Array::New(env, hits_[i].size());
        for (size_t j = 0; j < hits_[i].size(); ++j) {
          docs[j] = hits_[i][j].doc;
          scores[j] = hits_[i][j].score;
        }
        o.Set("docs", docs);
        o.Set("scores", scores);
        if (with_passages) {
          Napi::Array ps = Napi::Array::New(env, passages_[i].size());
          for (size_t j = 0; j < passages_[i].size(); ++j) ps.Set(uint32_t(j), passage_to_js(env, passages_[i][j]));
          o.Set("passages", ps);
        }
        out.Set(uint32_t(i), o);
      }
      deferred_.Resolve(out);
    }

   private:
    std::shared_ptr<const IndexReader> r_;
    std::vector<std::vector<retrieval::Hit>> hits_;
    std::vector<std::vector<retrieval::StoredPassage>> passages_;
  };

  Napi::Value Search(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto* w = new SearchWorker(env, reader(env));
    try {
      if (!info[0].IsArray()) throw make_error(env, "invalid_argument", "queries must be an array of strings");
      Napi::Array qs = info[0].As<Napi::Array>();
      for (uint32_t i = 0; i < qs.Length(); ++i) w->queries.push_back(js_string(qs.Get(i), "queries[" + std::to_string(i) + "]"));
      const double k = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
      if (!(k >= 1 && k <= 1e7) || k != double(size_t(k))) throw make_error(env, "invalid_argument", "k must be a positive integer");
      w->k = size_t(k);
      w->with_passages = info[2].ToBoolean();
      w->abort = abort_flag(info[3], w->keep);
    } catch (...) {
      delete w;
      throw;
    }
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value WriteTo(const Napi::CallbackInfo& info);

  class VerifyWorker : public PromiseWorker {
   public:
    VerifyWorker(Napi::Env env, std::shared_ptr<const IndexReader> r) : PromiseWorker(env), r_(std::move(r)) {}

   protected:
    void Work() override { r_->verify(); }
    void OnOK() override { deferred_.Resolve(Env().Undefined()); }

   private:
    std::shared_ptr<const IndexReader> r_;
  };

  // verify() → Promise<void>: every section against its checksum, off the JS thread.
  Napi::Value Verify(const Napi::CallbackInfo& info) {
    auto* w = new VerifyWorker(info.Env(), reader(info.Env()));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  void Close(const Napi::CallbackInfo&) { reader_.reset(); }

  std::shared_ptr<const IndexReader> reader_;
};

// ---- the writer ----

class NativeIndexWriter : public Napi::ObjectWrap<NativeIndexWriter> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeIndexWriter",
                       {InstanceMethod("add", &NativeIndexWriter::Add), InstanceMethod("finish", &NativeIndexWriter::Finish),
                        InstanceMethod("dispose", &NativeIndexWriter::Dispose), InstanceAccessor("passages", &NativeIndexWriter::Passages, nullptr)});
  }

  // new IndexWriter({ path?, k1, b, analyzer, luceneNorms, memoryBudget?, meta })
  explicit NativeIndexWriter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeIndexWriter>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw make_error(env, "invalid_argument", "options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    retrieval::WriterOptions w;
    if (o.Has("path") && !o.Get("path").IsUndefined()) {
      if (!o.Get("path").IsString()) throw make_error(env, "invalid_argument", "path must be a string");
      w.path = o.Get("path").As<Napi::String>().Utf8Value();
    }
    if (!o.Get("k1").IsNumber() || !o.Get("b").IsNumber()) throw make_error(env, "invalid_argument", "k1 and b must be numbers");
    w.k1 = o.Get("k1").As<Napi::Number>().DoubleValue();
    w.b = o.Get("b").As<Napi::Number>().DoubleValue();
    if (!(w.k1 >= 0) || !(w.b >= 0 && w.b <= 1)) throw make_error(env, "invalid_argument", "k1 must be ≥ 0 and b in [0, 1]");
    w.analyzer = analyzer_kind(o.Get("analyzer"));
    w.lucene_norms = o.Get("luceneNorms").ToBoolean();
    if (o.Has("memoryBudget") && o.Get("memoryBudget").IsNumber()) {
      const double m = o.Get("memoryBudget").As<Napi::Number>().DoubleValue();
      if (!(m >= 1)) throw make_error(env, "invalid_argument", "memoryBudget must be at least 1 byte");
      w.memory_budget = uint64_t(m);
    }
    if (o.Get("meta").IsString()) w.meta_json = o.Get("meta").As<Napi::String>().Utf8Value();
    path_ = w.path;
    writer_ = native_call(env, [&] { return std::make_shared<IndexWriter>(std::move(w)); });
  }

 private:
  std::shared_ptr<IndexWriter> writer(Napi::Env env) {
    if (!writer_) throw make_error(env, "disposed", "the index writer has been finished or disposed");
    if (busy_->load()) throw make_error(env, "busy", "the index writer is still adding the previous batch");
    return writer_;
  }

  class AddWorker : public PromiseWorker {
   public:
    AddWorker(Napi::Env env, std::shared_ptr<IndexWriter> w, std::shared_ptr<std::atomic<bool>> busy)
        : PromiseWorker(env), w_(std::move(w)), busy_(std::move(busy)) {}
    std::vector<retrieval::PassageInput> batch;
    const int32_t* abort = nullptr;
    Napi::ObjectReference keep;

   protected:
    void Work() override { w_->add(batch, abort); }
    void OnOK() override {
      busy_->store(false);
      deferred_.Resolve(Env().Undefined());
    }
    void OnError(const Napi::Error& e) override {
      busy_->store(false);
      PromiseWorker::OnError(e);
    }

   private:
    std::shared_ptr<IndexWriter> w_;
    std::shared_ptr<std::atomic<bool>> busy_;
  };

  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto* w = new AddWorker(env, writer(env), busy_);
    try {
      if (!info[0].IsArray()) throw make_error(env, "invalid_argument", "passages must be an array");
      Napi::Array ps = info[0].As<Napi::Array>();
      w->batch.resize(ps.Length());
      for (uint32_t i = 0; i < ps.Length(); ++i) {
        const std::string at = "passages[" + std::to_string(i) + "]";
        if (!ps.Get(i).IsObject()) throw make_error(env, "invalid_argument", at + " must be an object");
        Napi::Object p = ps.Get(i).As<Napi::Object>();
        auto& out = w->batch[i];
        out.id = js_string(p.Get("id"), at + ".id");
        out.text = js_string(p.Get("text"), at + ".text");
        out.source = js_string(p.Get("source"), at + ".source");
        Napi::Value title = p.Get("title");
        if (!title.IsUndefined() && !title.IsNull()) {
          out.title = js_string(title, at + ".title");
          out.has_title = true;
        }
      }
      w->abort = abort_flag(info[1], w->keep);
    } catch (...) {
      delete w;
      throw;
    }
    busy_->store(true);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  class FinishWorker : public PromiseWorker {
   public:
    FinishWorker(Napi::Env env, std::shared_ptr<IndexWriter> w, std::string name) : PromiseWorker(env), w_(std::move(w)), name_(std::move(name)) {}
    const int32_t* abort = nullptr;
    Napi::ObjectReference keep;
    std::string path;

   protected:
    void Work() override {
      std::string bytes = w_->finish(abort);
      w_.reset();  // temporary files go now, not when JS collects the writer
      auto view = path.empty() ? retrieval::ByteView::own(std::move(bytes)) : retrieval::ByteView::map_file(path);
      reader_ = IndexReader::open(std::move(view), name_);
    }
    void OnOK() override { deferred_.Resolve(NativeIndexReader::New(Env(), reader_)); }

   private:
    std::shared_ptr<IndexWriter> w_;
    std::string name_;
    std::shared_ptr<const IndexReader> reader_;
  };

  // finish(name, abort?) → Promise<NativeIndexReader>: the writer cannot be used after.
  Napi::Value Finish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto w = writer(env);
    const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "the index";
    auto* worker = new FinishWorker(env, w, name);
    try {
      worker->abort = abort_flag(info[1], worker->keep);
    } catch (...) {
      delete worker;
      throw;
    }
    worker->path = path_;
    writer_.reset();
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  }

  void Dispose(const Napi::CallbackInfo& info) {
    if (busy_->load()) throw make_error(info.Env(), "busy", "the index writer is still adding a batch");
    writer_.reset();
  }

  Napi::Value Passages(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), writer_ ? double(writer_->passages()) : 0); }

  std::shared_ptr<IndexWriter> writer_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  std::string path_;  // empty: built in memory
};

Napi::Value NativeIndexReader::WriteTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto r = reader(env);
  if (!info[0].IsString()) throw make_error(env, "invalid_argument", "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  native_call(env, [&] { r->write_to(path); });
  return env.Undefined();
}

Napi::Value OpenIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw make_error(env, "invalid_argument", "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  auto r = native_call(env, [&] { return IndexReader::open(retrieval::ByteView::map_file(path), path); });
  return NativeIndexReader::New(env, r);
}

}  // namespace

Napi::Object retrieval_exports(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("installTables", Napi::Function::New(env, InstallTables, "installTables"));
  o.Set("analyze", Napi::Function::New(env, Analyze, "analyze"));
  o.Set("standardTokens", Napi::Function::New(env, StandardTokens, "standardTokens"));
  o.Set("porterStem", Napi::Function::New(env, PorterStem, "porterStem"));
  o.Set("openIndex", Napi::Function::New(env, OpenIndex, "openIndex"));
  o.Set("IndexWriter", NativeIndexWriter::Init(env));
  env.GetInstanceData<AddonData>()->index_reader_ctor = Napi::Persistent(NativeIndexReader::Init(env));
  return o;
}

}  // namespace jamba::napi
