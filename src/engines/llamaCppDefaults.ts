/** Context size per sequence when neither the spec nor the model says less (both GGUF engines). */
export const MAX_DEFAULT_CONTEXT = 4096;
/** Concurrent generations of a GGUF instance when the spec names none. */
export const DEFAULT_SEQUENCES = 4;
