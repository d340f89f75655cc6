import { SmmfError } from "../errors/SmmfError.js";

/** A URL path segment, percent-decoded; malformed percent-encoding (`%ff`, `%zz`) is the client's error (400). */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new SmmfError("invalid_argument", "The request path has malformed percent-encoding");
  }
}
