declare module 'stemmer' {
  /** Porter's stemming algorithm (1980), as Lucene's PorterStemFilter applies it. */
  function stemmer(word: string): string;
  export = stemmer;
}
