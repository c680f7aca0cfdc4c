/**
 * The Porter stemmer as Lucene's PorterStemFilter applies it: Martin Porter's own C implementation
 * (with its two departures from the published algorithm, -bli → -ble and -logi → -log), on UTF-16
 * code units, words of one or two characters left alone. Checked against Lucene's on a corpus
 * vocabulary (test/retrieval-lucene.test.ts).
 */
export function porterStem(word: string): string {
  if (word.length <= 2) return word;
  const b = word.split('');
  const k0 = 0;
  let k = b.length - 1, j = 0;

  const cons = (i: number): boolean => {
    switch (b[i]) {
      case 'a': case 'e': case 'i': case 'o': case 'u': return false;
      case 'y': return i === k0 ? true : !cons(i - 1);
      default: return true;
    }
  };
  /** The number of consonant sequences between k0 and j. */
  const m = (): number => {
    let n = 0, i = k0;
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
  };
  const vowelInStem = (): boolean => {
    for (let i = k0; i <= j; i++) if (!cons(i)) return true;
    return false;
  };
  const doublec = (x: number): boolean => x >= k0 + 1 && b[x] === b[x - 1] && cons(x);
  const cvc = (i: number): boolean => {
    if (i < k0 + 2 || !cons(i) || cons(i - 1) || !cons(i - 2)) return false;
    const ch = b[i];
    return ch !== 'w' && ch !== 'x' && ch !== 'y';
  };
  const ends = (s: string): boolean => {
    const l = s.length, o = k - l + 1;
    if (o < k0) return false;
    for (let i = 0; i < l; i++) if (b[o + i] !== s[i]) return false;
    j = k - l;
    return true;
  };
  const setto = (s: string): void => {
    for (let i = 0; i < s.length; i++) b[j + 1 + i] = s[i]!;
    k = j + s.length;
  };
  const r = (s: string): void => {
    if (m() > 0) setto(s);
  };

  // Step 1ab: plurals and -ed or -ing.
  if (b[k] === 's') {
    if (ends('sses')) k -= 2;
    else if (ends('ies')) setto('i');
    else if (b[k - 1] !== 's') k--;
  }
  if (ends('eed')) {
    if (m() > 0) k--;
  } else if ((ends('ed') || ends('ing')) && vowelInStem()) {
    k = j;
    if (ends('at')) setto('ate');
    else if (ends('bl')) setto('ble');
    else if (ends('iz')) setto('ize');
    else if (doublec(k)) {
      k--;
      const ch = b[k];
      if (ch === 'l' || ch === 's' || ch === 'z') k++;
    } else if (m() === 1 && cvc(k)) setto('e');
  }
  // Step 1c: a terminal y after a vowel in the stem becomes i.
  if (ends('y') && vowelInStem()) b[k] = 'i';
  // Step 2: double suffixes to single ones.
  if (k !== k0) {
    switch (b[k - 1]) {
      case 'a': if (ends('ational')) r('ate'); else if (ends('tional')) r('tion'); break;
      case 'c': if (ends('enci')) r('ence'); else if (ends('anci')) r('ance'); break;
      case 'e': if (ends('izer')) r('ize'); break;
      case 'l':
        if (ends('bli')) r('ble');
        else if (ends('alli')) r('al');
        else if (ends('entli')) r('ent');
        else if (ends('eli')) r('e');
        else if (ends('ousli')) r('ous');
        break;
      case 'o': if (ends('ization')) r('ize'); else if (ends('ation')) r('ate'); else if (ends('ator')) r('ate'); break;
      case 's': if (ends('alism')) r('al'); else if (ends('iveness')) r('ive'); else if (ends('fulness')) r('ful'); else if (ends('ousness')) r('ous'); break;
      case 't': if (ends('aliti')) r('al'); else if (ends('iviti')) r('ive'); else if (ends('biliti')) r('ble'); break;
      case 'g': if (ends('logi')) r('log'); break;
      default: break;
    }
  }
  // Step 3: -ic-, -full, -ness and the like.
  switch (b[k]) {
    case 'e': if (ends('icate')) r('ic'); else if (ends('ative')) r(''); else if (ends('alize')) r('al'); break;
    case 'i': if (ends('iciti')) r('ic'); break;
    case 'l': if (ends('ical')) r('ic'); else if (ends('ful')) r(''); break;
    case 's': if (ends('ness')) r(''); break;
    default: break;
  }
  // Step 4: -ant, -ence and the like, where m > 1.
  step4: if (k !== k0) {
    switch (b[k - 1]) {
      case 'a': if (ends('al')) break; break step4;
      case 'c': if (ends('ance') || ends('ence')) break; break step4;
      case 'e': if (ends('er')) break; break step4;
      case 'i': if (ends('ic')) break; break step4;
      case 'l': if (ends('able') || ends('ible')) break; break step4;
      case 'n': if (ends('ant') || ends('ement') || ends('ment') || ends('ent')) break; break step4;
      case 'o':
        if (ends('ion') && j >= k0 && (b[j] === 's' || b[j] === 't')) break;
        if (ends('ou')) break;
        break step4;
      case 's': if (ends('ism')) break; break step4;
      case 't': if (ends('ate') || ends('iti')) break; break step4;
      case 'u': if (ends('ous')) break; break step4;
      case 'v': if (ends('ive')) break; break step4;
      case 'z': if (ends('ize')) break; break step4;
      default: break step4;
    }
    if (m() > 1) k = j;
  }
  // Step 5: a final -e, and -ll, where m > 1.
  j = k;
  if (b[k] === 'e') {
    const a = m();
    if (a > 1 || (a === 1 && !cvc(k - 1))) k--;
  }
  if (b[k] === 'l' && doublec(k) && m() > 1) k--;
  return b.slice(0, k + 1).join('');
}
