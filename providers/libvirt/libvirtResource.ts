// What the libvirt resources share at run time: the host's pools (a snippet each reads with its own
// other facts, in one round trip), and whether a pool or domain of the declared name is the stack's own.
import type { PreviousInputs } from "../hostResource";
import { existingPool, type ExistingPool } from "./pool";
import { virshSh } from "./virsh";

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

/**
 * Whether the stack had this resource under this name before this run. check only gets the old
 * inputs, not the uuid the state recorded, so there a pool or domain of that name is taken to be
 * the stack's own; create, update and read compare uuids.
 */
export const namedBefore = (previous: PreviousInputs | undefined, name: string): boolean => previous?.name === name;
