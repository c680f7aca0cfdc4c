import path from 'node:path';

export const SHARED = path.resolve(__dirname, '..', '..', '..', 'shared');
export const TINY_RANDOM = path.join(SHARED, 'fixtures', 'jamba-tiny-random');
export const SHAKESPEARE_REF = path.join(SHARED, 'models', 'jamba-tiny-shakespeare');
export const EMBEDDED = path.resolve(__dirname, '..', '..', 'models', 'jamba-tiny-shakespeare');
