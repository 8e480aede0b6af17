// What the libvirt resources share at run time: running the pure layer's HostSteps over SSH and
// reading the host's pools.
import type { PreviousInputs } from "../hostResource";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { virsh, type HostStep } from "../hostStep";
import { existingPool, type ExistingPool } from "./pool";

/** A step's `waitFor` did not see its value in time: the host is as the step left it. */
export class WaitTimeoutError extends Error {}

/** Runs one step: the command (stdin and timeout as the step says), then its waitFor poll, once a second. */
export async function runStep(host: RemoteHost, step: HostStep): Promise<void> {
  await host.run(step.argv, { stdin: step.stdin, timeoutMs: step.timeoutMs });
  const wait = step.waitFor;
  if (!wait) return;
  const deadline = Date.now() + wait.timeoutSeconds * 1000;
  while ((await host.exec(wait.argv)).stdout.trim() !== wait.until) {
    if (Date.now() >= deadline) throw new WaitTimeoutError(wait.timeoutMessage);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export async function runSteps(host: RemoteHost, steps: readonly HostStep[]): Promise<void> {
  for (const step of steps) await runStep(host, step);
}

/** `virsh COMMAND` as shell words, for the fact snippets (names reach them only as "$1"...). */
export const virshSh = (command: string): string => virsh(command).join(" ");

/**
 * Every pool on the host, active or not, for `parsePoolsSection`; empty where libvirt is not
 * installed yet. NUL between fields: pool names and XML never contain one. `read` with the default
 * IFS trims the names, which pool-list --name pads with spaces.
 */
export const POOLS_SNIPPET = `${virshSh("pool-list")} --all --name | while read -r p; do [ -n "$p" ] || continue
printf '\\0%s\\0' "$p"; ${virshSh("pool-dumpxml")} --pool "$p" </dev/null; printf '\\0'; ${virshSh("pool-info")} --pool "$p" </dev/null; done`;

export function parsePoolsSection(section: string): ExistingPool[] {
  const parts = section.split("\0").slice(1);
  const pools: ExistingPool[] = [];
  for (let i = 0; i + 2 < parts.length; i += 3) {
    // A pool undefined between the list and its dumpxml prints no XML.
    if (parts[i + 1].trim() !== "") pools.push(existingPool(parts[i + 1], parts[i + 2]));
  }
  return pools;
}

export async function readPools(host: RemoteHost): Promise<ExistingPool[]> {
  return parsePoolsSection((await readSections(host, { pools: POOLS_SNIPPET })).pools);
}

/**
 * Whether the stack had this resource under this name before this run. check only gets the old
 * inputs, not the uuid the state recorded, so there a pool or domain of that name is taken to be
 * the stack's own; create, update and read compare uuids.
 */
export const namedBefore = (previous: PreviousInputs | undefined, name: string): boolean => previous?.name === name;
