/**
 * Tokens a worker produces within this many milliseconds of the last streamed message are sent together
 * (see createWorkerInferenceService); the `streamIntervalMs` setting's default. Its own module: the settings
 * table reads it without loading the worker.
 */
export const DEFAULT_STREAM_INTERVAL_MS = 20;
