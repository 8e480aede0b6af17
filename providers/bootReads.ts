// The boot-time resources (KernelCmdline, VfioBinding, InitramfsModules) come together (VfioHost),
// and the engine checks one resource at a time. So the first of them checked on a host starts the
// reads of all of them at once: the host works on them together, and the later checks find their
// facts already read (RemoteHost.reads). Each module registers its reads here when it loads, so
// this module knows none of them.
import type { RemoteHost } from "./ssh/host";

/** A resource's plan-time reads for a check (no state), e.g. its facts, backups and trial-boot support. */
export type BootReads = (host: RemoteHost, trial: boolean) => Promise<unknown>;

const registered: BootReads[] = [];

export function registerBootReads(reads: BootReads): void {
  registered.push(reads);
}

/** Starts every boot-time resource's reads, without waiting: a failed one is read again by the plan that needs it. */
export function prefetchBootReads(host: RemoteHost, inputs: { trial: boolean }): void {
  for (const reads of registered) reads(host, inputs.trial).catch(() => undefined);
}
