const MIB = 1024 * 1024;

/** Bytes as whole MiB, rounded up, for messages: "15 MiB". */
export function mib(bytes: number): string {
  return `${Math.ceil(bytes / MIB)} MiB`;
}
