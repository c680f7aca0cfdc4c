declare module 'node-gyp-build' {
  /** Returns the addon built or prebuilt for this platform under `dir`. */
  function load(dir: string): unknown;
  export = load;
}
