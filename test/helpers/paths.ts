import path from 'node:path';
import { defaultModelDir, packageRoot } from '../../lib/paths';

/**
 * The test fixtures, inside the repository (test/fixtures; its README says how each was made),
 * found from the package root so that the compiled GPU checks and benches (dist/) read the same
 * files as the jest suite.
 */
export const FIXTURES = path.join(packageRoot(), 'test', 'fixtures');
export const TINY_RANDOM = path.join(FIXTURES, 'jamba-tiny-random');
/** The embedded model's Hugging Face references (its weights are EMBEDDED's). */
export const SHAKESPEARE_REF = path.join(FIXTURES, 'jamba-tiny-shakespeare');
export const EMBEDDED = defaultModelDir();
/** The tiny Shakespeare corpus the embedded model was trained on. */
export const CORPUS = path.join(FIXTURES, 'tinyshakespeare.txt');
export const CHAT_TEMPLATES = path.join(FIXTURES, 'chat-template');
/** Every tensor name and shape of the released Jamba checkpoints. */
export const LAYOUTS = path.join(FIXTURES, 'layouts');
