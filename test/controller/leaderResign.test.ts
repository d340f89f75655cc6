import { Etcd3, type Watcher } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { leaderRecord, startControllerProc, type ControllerProc } from "../helpers/controlCluster.js";
import { killAll, leaseOf, waitFor } from "../helpers/distCluster.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// README, "Operating models: the controller", High availability: "a leader that stops resigns and a standby
// leads at once". Two controllers whose leases have a TTL of 30 s: the leader is stopped gracefully (SIGTERM)
// and the standby must lead while the old leader's lease, had it not been given up, would still be alive.
const LEASE_TTL_S = 30;
const LEADER_KEY = "/smmf/v1/controller/leader";
const ELECTION_KEY = "/smmf/v1/controller/election";
let etcd: TestEtcd;
let first: ControllerProc;
let standby: ControllerProc;
let watchClient: Etcd3;
let leaderWatch: Watcher;
/** What a watcher of the leader key saw, in order. */
const leaderEvents: string[] = [];

async function healthOf(controller: ControllerProc): Promise<{ leader: boolean; term: string | null }> {
  return (await fetch(`${controller.url}/healthz`)).json() as Promise<{ leader: boolean; term: string | null }>;
}

async function leaderGauge(controller: ControllerProc): Promise<number> {
  return promValue(promSamples(await (await fetch(`${controller.url}/metrics`)).text()), "smmf_controller_leader");
}

/** The seconds a lease has left, from `etcdctl lease timetolive` (undefined once it is gone). */
async function remainingSeconds(leaseId: string): Promise<number | undefined> {
  const out = await etcd.etcdctl("--dial-timeout=2s", "--command-timeout=5s", "lease", "timetolive", BigInt(leaseId).toString(16));
  const m = /granted with TTL\((\d+)s\), remaining\((-?\d+)s\)/.exec(out);
  if (!m) return undefined;
  expect(Number(m[1])).toBe(LEASE_TTL_S);
  const remaining = Number(m[2]);
  return remaining >= 0 ? remaining : undefined;
}

beforeAll(async () => {
  etcd = await startEtcd();
  first = await startControllerProc(etcd, "rs-c1", LEASE_TTL_S);
  await waitFor("rs-c1 to lead", async () => (await leaderRecord(etcd))?.controllerId === "rs-c1", 15_000);
  standby = await startControllerProc(etcd, "rs-c2", LEASE_TTL_S);
  // The standby takes part in the election (it holds a lease of its own) and does not lead.
  await waitFor("rs-c2 to campaign", async () => (await fetch(`${standby.url}/readyz`)).status === 200, 15_000);
  watchClient = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 2_000 });
  leaderWatch = await watchClient.watch().key(LEADER_KEY).create();
  leaderWatch.on("put", (kv) => leaderEvents.push(`put ${(JSON.parse(kv.value.toString()) as { controllerId: string }).controllerId}`));
  leaderWatch.on("delete", () => leaderEvents.push("delete"));
}, 120_000);

afterAll(async () => {
  await leaderWatch?.cancel().catch(() => undefined);
  watchClient?.close();
  await killAll(first?.proc, standby?.proc);
  await etcd?.close();
});

describe("controller: a leader that stops resigns", () => {
  it("on SIGTERM the leader gives its lease up and the standby leads before that lease could have expired", async () => {
    expect(await healthOf(first)).toMatchObject({ leader: true });
    expect(await healthOf(standby)).toMatchObject({ leader: false, term: null });
    const old = await leaderRecord(etcd);
    expect(old?.controllerId).toBe("rs-c1");
    // The leader's lease (the one its election key and record are bound to), and how long it has left.
    const lease = await leaseOf(etcd, ELECTION_KEY);
    expect(lease).toMatch(/^[1-9]\d*$/);
    expect(await leaseOf(etcd, LEADER_KEY)).toBe(lease);
    const measuredAt = performance.now();
    const left = await remainingSeconds(lease!);
    expect(left).toBeGreaterThan(0);

    const exit = await first.proc.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    const leader = await waitFor("rs-c2 to lead", async () => {
      const record = await leaderRecord(etcd);
      return record?.controllerId === "rs-c2" ? record : undefined;
    }, 20_000, 50);
    const ledAfterMs = performance.now() - measuredAt;

    // The standby led while the old lease, left alone, would still have had time to run: it was given up
    // (revoked), not left to expire. Its keys went with it.
    expect(ledAfterMs, `rs-c2 led ${Math.round(ledAfterMs)} ms after the old lease had ${left} s left`).toBeLessThan(left! * 1_000);
    expect(await remainingSeconds(lease!)).toBeUndefined();
    expect(await leaseOf(etcd, ELECTION_KEY)).not.toBe(lease);
    expect(BigInt(leader.term)).toBeGreaterThan(BigInt(old!.term));
    expect(leader.address).toBe(standby.url);
    await waitFor("rs-c2 to say it leads", async () => (await healthOf(standby)).leader, 10_000);
    expect(await healthOf(standby)).toMatchObject({ leader: true, term: leader.term });
    expect(await leaderGauge(standby)).toBe(1);
    // A watcher of the leader key saw the old record go, then the new leader's.
    await waitFor("the watcher to see the new leader's record", () => leaderEvents.includes("put rs-c2"), 10_000);
    expect(leaderEvents).toEqual(["delete", "put rs-c2"]);
  }, 60_000);
});
