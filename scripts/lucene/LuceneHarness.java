/*
 * The reference for jamba-node's retrieval: real Lucene (8.7, Debian's liblucene8-java), used as
 * Pyserini uses it. Not part of the package; scripts/lucene/harness.sh compiles and runs it.
 *
 *   tables OUT.json                 Lucene's StandardTokenizer as data: its scanner's character map
 *                                   (code point -> class), DFA, accepting states and each action's
 *                                   token type; and Java's Character.toLowerCase where it is not
 *                                   the identity (what LowerCaseFilter applies)
 *   analyze IN.tsv OUT.jsonl        each passage's terms through EnglishAnalyzer (Pyserini's
 *                                   DefaultEnglishAnalyzer: standard tokenizer, possessive filter,
 *                                   lower case, stop words, Porter)
 *   tokens IN.tsv OUT.jsonl         each passage's StandardTokenizer tokens, with their types
 *   stem IN.txt OUT.txt             Lucene's PorterStemmer on one word per line
 *   search IN.tsv QUERIES.tsv K OUT.jsonl [--exact-norms]
 *                                   index the passages in one segment (BM25Similarity(0.9, 0.4)),
 *                                   then each query as Pyserini's bag of words (each distinct term a
 *                                   TermQuery boosted by its count): the top K ids and scores
 *   version                         {"lucene": the Lucene version, "java": the JVM's}
 *   build IN.tsv DIR                index into DIR (streamed, one segment) and time it: {"build": s}
 *   query DIR QUERIES.tsv REPS      open DIR, warm up on the queries, then REPS passes of them at
 *                                   top 1 and top 10, each hit's stored text fetched as a retriever
 *                                   returns it: {"1": [ms...], "10": [ms...]}
 *
 * IN.tsv: one passage a line, `id TAB contents` with \n, \r, \t and \\ escaped. QUERIES.tsv: `id TAB text`.
 */
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.apache.lucene.analysis.core.KeywordTokenizer;
import org.apache.lucene.analysis.en.PorterStemFilter;
import org.apache.lucene.analysis.standard.StandardTokenizer;
import org.apache.lucene.analysis.standard.StandardTokenizerImpl;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.TypeAttribute;
import org.apache.lucene.document.*;
import org.apache.lucene.index.*;
import org.apache.lucene.search.*;
import org.apache.lucene.search.similarities.BM25Similarity;
import org.apache.lucene.store.*;

public final class LuceneHarness {
  static final String FIELD = "contents";

  public static void main(String[] args) throws Exception {
    switch (args[0]) {
      case "tables": tables(args[1]); break;
      case "analyze": analyze(args[1], args[2], false); break;
      case "tokens": analyze(args[1], args[2], true); break;
      case "stem": stem(args[1], args[2]); break;
      case "search": search(args[1], args[2], Integer.parseInt(args[3]), args[4], args.length > 5 && args[5].equals("--exact-norms")); break;
      case "version": System.out.println("{\"lucene\":\"" + org.apache.lucene.util.Version.LATEST + "\",\"java\":\"" + System.getProperty("java.version") + "\"}"); break;
      case "build": build(args[1], args[2]); break;
      case "query": query(args[1], args[2], Integer.parseInt(args[3])); break;
      default: throw new IllegalArgumentException("unknown mode " + args[0]);
    }
  }

  // ---------------------------------------------------------------- input and output

  static String unescape(String s) {
    StringBuilder b = new StringBuilder(s.length());
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' && i + 1 < s.length()) {
        char n = s.charAt(++i);
        b.append(n == 'n' ? '\n' : n == 'r' ? '\r' : n == 't' ? '\t' : n);
      } else b.append(c);
    }
    return b.toString();
  }

  /** The passages of IN.tsv one at a time, so that a corpus larger than the heap can be indexed. */
  static Iterable<String[]> streamTsv(String file) {
    return () -> {
      try {
        BufferedReader r = new BufferedReader(new InputStreamReader(new FileInputStream(file), StandardCharsets.UTF_8), 1 << 20);
        return new Iterator<String[]>() {
          String next = advance();
          String advance() {
            try {
              for (String l; (l = r.readLine()) != null;) if (!l.isEmpty()) return l;
              r.close();
              return null;
            } catch (IOException e) {
              throw new UncheckedIOException(e);
            }
          }
          public boolean hasNext() { return next != null; }
          public String[] next() {
            String line = next;
            next = advance();
            int tab = line.indexOf('\t');
            return new String[] {line.substring(0, tab), unescape(line.substring(tab + 1))};
          }
        };
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    };
  }

  static List<String[]> readTsv(String file) throws IOException {
    List<String[]> out = new ArrayList<>();
    // Split at line feeds only (readAllLines would split at carriage returns too).
    for (String line : new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.UTF_8).split("\n")) {
      if (line.isEmpty()) continue;
      int tab = line.indexOf('\t');
      out.add(new String[] {line.substring(0, tab), unescape(line.substring(tab + 1))});
    }
    return out;
  }

  static String json(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  static Writer writer(String file) throws IOException {
    return new BufferedWriter(new OutputStreamWriter(new FileOutputStream(file), StandardCharsets.UTF_8));
  }

  // ---------------------------------------------------------------- the tokenizer as data

  static Object field(String name) throws Exception {
    java.lang.reflect.Field f = StandardTokenizerImpl.class.getDeclaredField(name);
    f.setAccessible(true);
    return f.get(null);
  }

  static void tables(String out) throws Exception {
    char[] cmap = (char[]) field("ZZ_CMAP");
    int[] rowmap = (int[]) field("ZZ_ROWMAP"), trans = (int[]) field("ZZ_TRANS"), attr = (int[]) field("ZZ_ATTRIBUTE"), action = (int[]) field("ZZ_ACTION");
    int[] lexstate = (int[]) field("ZZ_LEXSTATE");
    int classes = 0;
    for (char c : cmap) classes = Math.max(classes, c + 1);
    int states = rowmap.length, start = lexstate[0];
    // One code point per class, for building strings that reach a state.
    int[] rep = new int[classes];
    Arrays.fill(rep, -1);
    for (int cp = 0; cp < cmap.length; cp++) if (rep[cmap[cp]] < 0 && (cp < 0xD800 || cp > 0xDFFF)) rep[cmap[cp]] = cp;
    // Each action's token type: reach a state with that action by BFS, run the real scanner on the path.
    int[] prev = new int[states], via = new int[states];
    Arrays.fill(prev, -2);
    prev[start] = -1;
    ArrayDeque<Integer> queue = new ArrayDeque<>(List.of(start));
    while (!queue.isEmpty()) {
      int s = queue.poll();
      for (int c = 0; c < classes; c++) {
        int n = trans[rowmap[s] + c];
        if (n >= 0 && prev[n] == -2 && rep[c] >= 0) {
          prev[n] = s;
          via[n] = c;
          queue.add(n);
        }
      }
    }
    Map<Integer, Integer> typeOfAction = new TreeMap<>();
    for (int s = 0; s < states; s++) {
      if ((attr[s] & 1) == 0 || prev[s] == -2 || typeOfAction.containsKey(action[s])) continue;
      StringBuilder path = new StringBuilder();
      for (int x = s; prev[x] >= 0; x = prev[x]) path.insert(0, new String(Character.toChars(rep[via[x]])));
      StandardTokenizerImpl scanner = new StandardTokenizerImpl(new StringReader(path.toString()));
      int t = scanner.getNextToken();
      // The whole path is one match; an action that emits nothing goes on to the end of input.
      typeOfAction.put(action[s], t == StandardTokenizerImpl.YYEOF ? -1 : t);
    }
    try (Writer w = writer(out)) {
      w.write("{\"lucene\":" + json(org.apache.lucene.util.Version.LATEST.toString()) + ",\"java\":" + json(System.getProperty("java.version")));
      w.write(",\"tokenTypes\":[");
      for (int i = 0; i < StandardTokenizer.TOKEN_TYPES.length; i++) w.write((i > 0 ? "," : "") + json(StandardTokenizer.TOKEN_TYPES[i]));
      w.write("],\"classes\":" + classes + ",\"states\":" + states + ",\"start\":" + start);
      // The character map as runs: [first code point, class] where the class changes.
      w.write(",\"cmap\":[");
      int last = -1;
      boolean first = true;
      for (int cp = 0; cp < cmap.length; cp++) {
        if (cmap[cp] == last) continue;
        last = cmap[cp];
        w.write((first ? "" : ",") + cp + "," + last);
        first = false;
      }
      w.write("],\"trans\":[");
      for (int s = 0; s < states; s++) for (int c = 0; c < classes; c++) w.write((s + c > 0 ? "," : "") + trans[rowmap[s] + c]);
      w.write("],\"accepting\":[");
      for (int s = 0; s < states; s++) w.write((s > 0 ? "," : "") + (attr[s] & 9));
      w.write("],\"action\":[");
      for (int s = 0; s < states; s++) w.write((s > 0 ? "," : "") + action[s]);
      w.write("],\"typeOfAction\":{");
      first = true;
      for (Map.Entry<Integer, Integer> e : typeOfAction.entrySet()) {
        w.write((first ? "" : ",") + "\"" + e.getKey() + "\":" + e.getValue());
        first = false;
      }
      // Java's simple lower-case mapping, where it is not the identity (LowerCaseFilter).
      w.write("},\"lower\":[");
      first = true;
      for (int cp = 0; cp <= Character.MAX_CODE_POINT; cp++) {
        int l = Character.toLowerCase(cp);
        if (l == cp) continue;
        w.write((first ? "" : ",") + cp + "," + l);
        first = false;
      }
      w.write("]}\n");
    }
  }

  // ---------------------------------------------------------------- analysis

  static void analyze(String in, String out, boolean tokensOnly) throws IOException {
    Analyzer a = tokensOnly ? new Analyzer() {
      @Override
      protected TokenStreamComponents createComponents(String f) {
        return new TokenStreamComponents(new StandardTokenizer());
      }
    } : new EnglishAnalyzer();
    try (Writer w = writer(out)) {
      for (String[] p : readTsv(in)) {
        StringBuilder b = new StringBuilder("{\"id\":" + json(p[0]) + ",\"terms\":[");
        try (TokenStream ts = a.tokenStream(FIELD, p[1])) {
          CharTermAttribute term = ts.addAttribute(CharTermAttribute.class);
          TypeAttribute type = ts.addAttribute(TypeAttribute.class);
          ts.reset();
          boolean first = true;
          while (ts.incrementToken()) {
            b.append(first ? "" : ",").append(json(term.toString()));
            if (tokensOnly) b.append(",").append(json(type.type()));
            first = false;
          }
          ts.end();
        }
        w.write(b.append("]}\n").toString());
      }
    }
  }

  /** PorterStemFilter (Lucene's PorterStemmer) on each word alone. */
  static void stem(String in, String out) throws IOException {
    Analyzer a = new Analyzer() {
      @Override
      protected TokenStreamComponents createComponents(String f) {
        KeywordTokenizer t = new KeywordTokenizer();
        return new TokenStreamComponents(t, new PorterStemFilter(t));
      }
    };
    try (Writer w = writer(out)) {
      for (String word : Files.readAllLines(Paths.get(in), StandardCharsets.UTF_8)) {
        try (TokenStream ts = a.tokenStream(FIELD, word)) {
          CharTermAttribute term = ts.addAttribute(CharTermAttribute.class);
          ts.reset();
          w.write((ts.incrementToken() ? term.toString() : "") + "\n");
          ts.end();
        }
      }
    }
  }

  // ---------------------------------------------------------------- indexing and search, as Pyserini does

  /** The distinct terms of a query with their counts, in first-seen order (Anserini's BagOfWordsQueryGenerator). */
  static Query bagOfWords(Analyzer a, String text) throws IOException {
    Map<String, Integer> counts = new LinkedHashMap<>();
    try (TokenStream ts = a.tokenStream(FIELD, text)) {
      CharTermAttribute term = ts.addAttribute(CharTermAttribute.class);
      ts.reset();
      while (ts.incrementToken()) counts.merge(term.toString(), 1, Integer::sum);
      ts.end();
    }
    BooleanQuery.Builder b = new BooleanQuery.Builder();
    for (Map.Entry<String, Integer> e : counts.entrySet())
      b.add(new BoostQuery(new TermQuery(new Term(FIELD, e.getKey())), (float) e.getValue()), BooleanClause.Occur.SHOULD);
    return b.build();
  }

  static void index(Iterable<String[]> passages, Directory dir, Analyzer a) throws IOException {
    IndexWriterConfig cfg = new IndexWriterConfig(a).setSimilarity(new BM25Similarity(0.9f, 0.4f)).setRAMBufferSizeMB(512)
        .setOpenMode(IndexWriterConfig.OpenMode.CREATE);
    try (IndexWriter w = new IndexWriter(dir, cfg)) {
      FieldType contents = new FieldType();
      contents.setIndexOptions(IndexOptions.DOCS_AND_FREQS_AND_POSITIONS);
      contents.setTokenized(true);
      contents.setStored(true);
      for (String[] p : passages) {
        Document d = new Document();
        d.add(new StringField("id", p[0], Field.Store.YES));
        d.add(new Field(FIELD, p[1], contents));
        w.addDocument(d);
      }
      w.forceMerge(1);
    }
  }

  static void search(String in, String queries, int k, String out, boolean exactNorms) throws IOException {
    Analyzer a = new EnglishAnalyzer();
    Path tmp = Files.createTempDirectory("lucene-golden");
    try (Directory dir = FSDirectory.open(tmp)) {
      index(readTsv(in), dir, a);
      try (IndexReader r = DirectoryReader.open(dir); Writer w = writer(out)) {
        IndexSearcher s = new IndexSearcher(r);
        s.setSimilarity(new BM25Similarity(0.9f, 0.4f));
        for (String[] q : readTsv(queries)) {
          StringBuilder b = new StringBuilder("{\"query\":" + json(q[0]) + ",\"hits\":[");
          TopDocs top = s.search(bagOfWords(a, q[1]), k);
          for (int i = 0; i < top.scoreDocs.length; i++) {
            ScoreDoc sd = top.scoreDocs[i];
            b.append(i > 0 ? "," : "").append("[").append(json(r.document(sd.doc).get("id"))).append(",").append(Float.toString(sd.score)).append("]");
          }
          w.write(b.append("]}\n").toString());
        }
      }
    } finally {
      for (File f : tmp.toFile().listFiles()) f.delete();
      tmp.toFile().delete();
    }
  }

  static void build(String in, String dirPath) throws IOException {
    long t0 = System.nanoTime();
    try (Directory dir = FSDirectory.open(Paths.get(dirPath))) {
      index(streamTsv(in), dir, new EnglishAnalyzer());
    }
    System.out.println("{\"build\":" + (System.nanoTime() - t0) / 1e9 + "}");
  }

  static void query(String dirPath, String queries, int reps) throws IOException {
    Analyzer a = new EnglishAnalyzer();
    List<String[]> qs = readTsv(queries);
    try (Directory dir = FSDirectory.open(Paths.get(dirPath)); IndexReader r = DirectoryReader.open(dir)) {
      IndexSearcher s = new IndexSearcher(r);
      s.setSimilarity(new BM25Similarity(0.9f, 0.4f));
      for (int rep = 0; rep < 2; rep++)
        for (String[] q : qs) s.search(bagOfWords(a, q[1]), 10);  // the JIT warms up
      StringBuilder b = new StringBuilder("{");
      for (int k : new int[] {1, 10}) {
        List<Double> ms = new ArrayList<>();
        for (int rep = 0; rep < reps; rep++)
          for (String[] q : qs) {
            long t = System.nanoTime();
            TopDocs top = s.search(bagOfWords(a, q[1]), k);
            for (ScoreDoc sd : top.scoreDocs) r.document(sd.doc).get(FIELD);  // the passages' text too, as a retriever returns it
            ms.add((System.nanoTime() - t) / 1e6);
          }
        b.append(k == 1 ? "" : ",").append("\"").append(k).append("\":[");
        for (int i = 0; i < ms.size(); i++) b.append(i > 0 ? "," : "").append(ms.get(i));
        b.append("]");
      }
      System.out.println(b.append("}").toString());
    }
  }
}
