#include "porter_stem.h"

namespace jamba::retrieval {

namespace {

// Porter's stemmer state: the word b[0..k], j a working offset into it (the end of the stem when a
// suffix matched). Indices below 0 read as no letter.
struct Stemmer {
  std::u16string& b;
  int k, j = 0;

  char16_t at(int i) const { return i >= 0 && i < int(b.size()) ? b[size_t(i)] : u'\0'; }

  bool cons(int i) const {
    switch (at(i)) {
      case u'a': case u'e': case u'i': case u'o': case u'u': return false;
      case u'y': return i == 0 ? true : !cons(i - 1);
      default: return true;
    }
  }
  // The number of consonant sequences between 0 and j.
  int m() const {
    int n = 0, i = 0;
    for (;;) {
      if (i > j) return n;
      if (!cons(i)) break;
      i++;
    }
    i++;
    for (;;) {
      for (;;) {
        if (i > j) return n;
        if (cons(i)) break;
        i++;
      }
      i++;
      n++;
      for (;;) {
        if (i > j) return n;
        if (!cons(i)) break;
        i++;
      }
      i++;
    }
  }
  bool vowel_in_stem() const {
    for (int i = 0; i <= j; i++)
      if (!cons(i)) return true;
    return false;
  }
  bool doublec(int x) const { return x >= 1 && at(x) == at(x - 1) && cons(x); }
  bool cvc(int i) const {
    if (i < 2 || !cons(i) || cons(i - 1) || !cons(i - 2)) return false;
    char16_t ch = at(i);
    return ch != u'w' && ch != u'x' && ch != u'y';
  }
  bool ends(const char* s) {
    int l = 0;
    while (s[l]) ++l;
    int o = k - l + 1;
    if (o < 0) return false;
    for (int i = 0; i < l; i++)
      if (at(o + i) != char16_t(s[i])) return false;
    j = k - l;
    return true;
  }
  void setto(const char* s) {
    int l = 0;
    while (s[l]) ++l;
    if (j + 1 + l > int(b.size())) b.resize(size_t(j + 1 + l));
    for (int i = 0; i < l; i++) b[size_t(j + 1 + i)] = char16_t(s[i]);
    k = j + l;
  }
  void r(const char* s) {
    if (m() > 0) setto(s);
  }

  void step1ab() {  // plurals and -ed or -ing
    if (at(k) == u's') {
      if (ends("sses")) k -= 2;
      else if (ends("ies")) setto("i");
      else if (at(k - 1) != u's') k--;
    }
    if (ends("eed")) {
      if (m() > 0) k--;
    } else if ((ends("ed") || ends("ing")) && vowel_in_stem()) {
      k = j;
      if (ends("at")) setto("ate");
      else if (ends("bl")) setto("ble");
      else if (ends("iz")) setto("ize");
      else if (doublec(k)) {
        k--;
        char16_t ch = at(k);
        if (ch == u'l' || ch == u's' || ch == u'z') k++;
      } else if (m() == 1 && cvc(k)) setto("e");
    }
  }
  void step1c() {  // a terminal y after a vowel in the stem becomes i
    if (ends("y") && vowel_in_stem()) b[size_t(k)] = u'i';
  }
  void step2() {  // double suffixes to single ones
    if (k == 0) return;
    switch (at(k - 1)) {
      case u'a': if (ends("ational")) r("ate"); else if (ends("tional")) r("tion"); break;
      case u'c': if (ends("enci")) r("ence"); else if (ends("anci")) r("ance"); break;
      case u'e': if (ends("izer")) r("ize"); break;
      case u'l':
        if (ends("bli")) r("ble");
        else if (ends("alli")) r("al");
        else if (ends("entli")) r("ent");
        else if (ends("eli")) r("e");
        else if (ends("ousli")) r("ous");
        break;
      case u'o': if (ends("ization")) r("ize"); else if (ends("ation")) r("ate"); else if (ends("ator")) r("ate"); break;
      case u's': if (ends("alism")) r("al"); else if (ends("iveness")) r("ive"); else if (ends("fulness")) r("ful"); else if (ends("ousness")) r("ous"); break;
      case u't': if (ends("aliti")) r("al"); else if (ends("iviti")) r("ive"); else if (ends("biliti")) r("ble"); break;
      case u'g': if (ends("logi")) r("log"); break;
      default: break;
    }
  }
  void step3() {  // -ic-, -full, -ness and the like
    switch (at(k)) {
      case u'e': if (ends("icate")) r("ic"); else if (ends("ative")) r(""); else if (ends("alize")) r("al"); break;
      case u'i': if (ends("iciti")) r("ic"); break;
      case u'l': if (ends("ical")) r("ic"); else if (ends("ful")) r(""); break;
      case u's': if (ends("ness")) r(""); break;
      default: break;
    }
  }
  void step4() {  // -ant, -ence and the like, where m > 1
    if (k == 0) return;
    bool hit = false;
    switch (at(k - 1)) {
      case u'a': hit = ends("al"); break;
      case u'c': hit = ends("ance") || ends("ence"); break;
      case u'e': hit = ends("er"); break;
      case u'i': hit = ends("ic"); break;
      case u'l': hit = ends("able") || ends("ible"); break;
      case u'n': hit = ends("ant") || ends("ement") || ends("ment") || ends("ent"); break;
      case u'o': hit = (ends("ion") && j >= 0 && (at(j) == u's' || at(j) == u't')) || ends("ou"); break;
      case u's': hit = ends("ism"); break;
      case u't': hit = ends("ate") || ends("iti"); break;
      case u'u': hit = ends("ous"); break;
      case u'v': hit = ends("ive"); break;
      case u'z': hit = ends("ize"); break;
      default: break;
    }
    if (hit && m() > 1) k = j;
  }
  void step5() {  // a final -e, and -ll, where m > 1
    j = k;
    if (at(k) == u'e') {
      int a = m();
      if (a > 1 || (a == 1 && !cvc(k - 1))) k--;
    }
    if (at(k) == u'l' && doublec(k) && m() > 1) k--;
  }
};

}  // namespace

void porter_stem(std::u16string& word) {
  if (word.size() <= 2) return;
  Stemmer s{word, int(word.size()) - 1};
  s.step1ab();
  s.step1c();
  s.step2();
  s.step3();
  s.step4();
  s.step5();
  word.resize(size_t(s.k + 1));
}

}  // namespace jamba::retrieval
