/** Root of SMMF's keys in etcd; the version segment changes only with an incompatible layout. */
export const ETCD_ROOT = "/smmf/v1/";
export const INSTANCES_PREFIX = `${ETCD_ROOT}instances/`;
export const WORKERS_PREFIX = `${ETCD_ROOT}workers/`;
export const MODELS_PREFIX = `${ETCD_ROOT}models/`;
export const GATEWAYS_PREFIX = `${ETCD_ROOT}gateways/`;
/** The controllers' election: created in a transaction only while it does not exist; its create revision is the term. */
export const ELECTION_KEY = `${ETCD_ROOT}controller/election`;

/** `/smmf/v1/instances/<model>/<instance-id>` */
export function instanceKey(model: string, instanceId: string): string {
  return `${INSTANCES_PREFIX}${model}/${instanceId}`;
}

/** `/smmf/v1/workers/<worker-id>` */
export function workerKey(workerId: string): string {
  return `${WORKERS_PREFIX}${workerId}`;
}

/** `/smmf/v1/models/<name>` */
export function modelKey(name: string): string {
  return `${MODELS_PREFIX}${name}`;
}
