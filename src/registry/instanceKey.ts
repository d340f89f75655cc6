/** Root of SMMF's keys in etcd; the version segment changes only with an incompatible layout. */
export const ETCD_ROOT = "/smmf/v1/";
export const INSTANCES_PREFIX = `${ETCD_ROOT}instances/`;

/** `/smmf/v1/instances/<model>/<instance-id>` */
export function instanceKey(model: string, instanceId: string): string {
  return `${INSTANCES_PREFIX}${model}/${instanceId}`;
}
