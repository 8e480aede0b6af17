// Named points where the fault-injection suite stops a run at an exact step (etcd's gofail idea):
// each point reached is appended to VFIO_HOST_FAILPOINT_LOG, and the point named by
// VFIO_HOST_FAILPOINT hangs there until the test kills the run. Unset, both cost one lookup.
import { appendFileSync } from "fs";

export async function failpoint(name: string): Promise<void> {
  const log = process.env.VFIO_HOST_FAILPOINT_LOG;
  if (log) appendFileSync(log, `${name}\n`);
  if (process.env.VFIO_HOST_FAILPOINT === name) await new Promise<never>(() => undefined);
}
