import path from 'node:path';

/** The reference material: ../shared beside the repository, or JAMBA_SHARED_DIR. */
export const SHARED = process.env.JAMBA_SHARED_DIR ?? path.resolve(__dirname, '..', '..', '..', 'shared');
export const TINY_RANDOM = path.join(SHARED, 'fixtures', 'jamba-tiny-random');
export const SHAKESPEARE_REF = path.join(SHARED, 'models', 'jamba-tiny-shakespeare');
export const EMBEDDED = path.resolve(__dirname, '..', '..', 'models', 'jamba-tiny-shakespeare');
