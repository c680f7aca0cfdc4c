/**
 * Typed errors. Every public entry point throws one of these, naming the file, tensor, field or
 * argument at fault; none of them leaves a model unusable.
 */

/** Base class of every error jamba-node throws. `code` is stable and machine-readable. */
export class JambaError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A function argument or option is missing, of the wrong type or out of range. */
export class InvalidArgumentError extends JambaError {
  constructor(message: string) {
    super('invalid_argument', message);
  }
}

/** `config.json` has a missing, mistyped or inconsistent field. */
export class ConfigError extends JambaError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('config', `config.json: ${field}: ${message}`);
    this.field = field;
  }
}

/** A checkpoint file or tensor is missing, malformed, truncated or of the wrong shape or dtype. */
export class CheckpointError extends JambaError {
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  constructor(message: string, where: { file?: string; tensor?: string } = {}) {
    const loc = [where.file, where.tensor && `tensor ${where.tensor}`].filter(Boolean).join(': ');
    super('checkpoint', loc ? `${loc}: ${message}` : message);
    this.file = where.file;
    this.tensor = where.tensor;
  }
}

/** The tokenizer files are missing or unusable, or text could not be encoded. */
export class TokenizerError extends JambaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('tokenizer', message, options);
  }
}

/** A retrieval corpus or a saved index is missing, empty, binary or malformed. */
export class CorpusError extends JambaError {
  readonly file: string | undefined;
  constructor(message: string, file?: string) {
    super('corpus', file ? `${file}: ${message}` : message);
    this.file = file;
  }
}

/**
 * The device asked for cannot run this model: the build has no CUDA backend, or a config field
 * (`field`) lies outside what the CUDA kernels support.
 */
export class UnsupportedDeviceError extends JambaError {
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super('unsupported_device', field ? `${field}: ${message}` : message);
    this.field = field;
  }
}

/** No usable CUDA device or driver (the CUDA build runs, but this machine cannot). */
export class NoDeviceError extends JambaError {
  constructor(message: string) {
    super('no_device', message);
  }
}

/** A CUDA call or kernel failed (the message names the call and CUDA's error). */
export class CudaError extends JambaError {
  constructor(message: string) {
    super('cuda', message);
  }
}

/** The operation was cancelled through its AbortSignal. */
export class AbortError extends JambaError {
  constructor(message = 'The operation was aborted') {
    super('aborted', message);
  }
}

/** The model or sequence was disposed before this call. */
export class DisposedError extends JambaError {
  constructor(what: string) {
    super('disposed', `${what} has been disposed`);
  }
}

/** Native memory could not be allocated. */
export class OutOfMemoryError extends JambaError {
  constructor(message: string) {
    super('out_of_memory', message);
  }
}

/** The sequence is already being evaluated by another call. */
export class BusyError extends JambaError {
  constructor(message: string) {
    super('busy', message);
  }
}

/** Maps an error thrown by the native addon (a plain Error with `code`) to its typed class. */
export function fromNative(e: unknown): Error {
  // Duck-typed: errors made by the addon belong to the main realm, which `instanceof Error` in
  // another realm (a vm context, jest) does not recognise.
  if (e instanceof JambaError || typeof e !== 'object' || e === null || typeof (e as Error).message !== 'string') return e as Error;
  const { code, message } = e as Error & { code?: string };
  switch (code) {
    case 'invalid_argument': return new InvalidArgumentError(message);
    case 'checkpoint': return new CheckpointError(message);
    case 'aborted': return new AbortError(message);
    case 'disposed': return new DisposedError(message.replace(/ has been disposed$/, ''));
    case 'out_of_memory': return new OutOfMemoryError(message);
    case 'busy': return new BusyError(message);
    case 'no_device': return new NoDeviceError(message);
    case 'cuda': return new CudaError(message);
    default: return new JambaError(code ?? 'internal', message, { cause: e });
  }
}
