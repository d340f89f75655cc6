import type { IOptions } from "etcd3";

/** Longest wait for one unary etcd call on one member before etcd3 tries another member. */
export const ETCD_CALL_DEADLINE_MS = 2_000;

/**
 * Call and channel options of every etcd3 client SMMF makes. One etcd3 client spreads its calls over all the
 * endpoints; without these, a call or stream that lands on a member that has gone silent (partitioned, not
 * refusing) waits forever: found by the multi-host rig (test/rig, rig/README.md), where admin changes failed
 * and workers dropped out of the registry while one of three members was cut off.
 * - Unary calls get a deadline: a missed one is a recoverable error to etcd3, which retries on another member.
 * - Streams (watches, lease keep-alives) get no deadline, but the channel sends HTTP/2 pings while calls are
 *   open: a member that answers none within 2 s is dropped, and the streams start again on another one. etcd
 *   refuses pings more often than every 5 s (its --grpc-keepalive-min-time), hence 6 s.
 */
export const ETCD_CALL_OPTIONS: Pick<IOptions, "defaultCallOptions" | "grpcOptions"> = {
  defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_DEADLINE_MS }),
  grpcOptions: { "grpc.keepalive_time_ms": 6_000, "grpc.keepalive_timeout_ms": 2_000, "grpc.keepalive_permit_without_calls": 0 },
};
