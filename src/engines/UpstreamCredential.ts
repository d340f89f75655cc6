/**
 * An upstream API key the worker's operator defines in the worker's configuration (`upstreamCredentials`):
 * model specs name it (`proxy.credential`), never the variable or file it is read from, and its key is sent
 * only to the base URLs it allows.
 */
export interface UpstreamCredential {
  /** The name specs use (`proxy.credential`). */
  name: string;
  /** Environment variable of the worker holding the key (exactly one of env and file). */
  env?: string;
  /** File on the worker holding the key. */
  file?: string;
  /** Base URLs the key may be sent to (see matchAllowedBaseUrl). */
  allowedBaseUrls: string[];
}
